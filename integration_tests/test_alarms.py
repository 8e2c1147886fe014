"""Alarms: al00 once per alarm change, and f142 carrying status and severity in every message.

DOUBLE (ioc/test.db) has HIGH=10 (MINOR) and HIHI=20 (MAJOR). Every stream sends al00 next
to its data on the same topic.
"""

from __future__ import annotations

import pytest

from helpers.flatbuffers_helpers import describe
from integration_tests.forwarder_fixtures import PROTOCOLS, Stream, epics_read, epics_write

TIMEOUT = 20.0

# value put -> (EPICS alarm status, severity) the record then has.
STEPS = (
    (15.0, "HIGH", "MINOR"),
    (25.0, "HIHI", "MAJOR"),
    (26.0, "HIHI", "MAJOR"),  # no alarm change: no al00
    (15.5, "HIGH", "MINOR"),
    (2.0, "NO_ALARM", "NO_ALARM"),
    (3.0, "NO_ALARM", "NO_ALARM"),  # no alarm change: the positive marker
)
AL00_SEVERITY = {"NO_ALARM": "OK", "MINOR": "MINOR", "MAJOR": "MAJOR", "INVALID": "INVALID"}


def _expected_message(protocol, epics_network, name, status) -> str:
    """al00's message: for CA the status name ("NO_ALARM" too, as the ESS forwarder sends
    it), for PVA the alarm message the PVA server reports."""
    if protocol == "PVA":
        return epics_read("PVA", epics_network, name)["message"]
    return status


def _run_steps(protocol, schema, ioc, epics_network, control, outputs, topics):
    """Forward DOUBLE as ``schema``, wait for the initial value, then walk through STEPS,
    waiting for each value. Returns (reader, mark after the initial value, expected al00,
    timestamp of the initial value)."""
    name = ioc.pv("DOUBLE")
    topic = topics.new("alarms")
    reader = outputs(topic)
    stream = Stream(name, schema, topic, protocol)
    [initial] = control.add_and_wait([stream], reader, timeout=TIMEOUT)
    mark = len(reader.records)
    expected_al00 = []
    previous = ("NO_ALARM", "NO_ALARM")
    for value, status, severity in STEPS:
        epics_write(name, value)
        reading = epics_read(protocol, epics_network, name)
        if (status, severity) != previous:
            message = _expected_message(protocol, epics_network, name, status)
            expected_al00.append((AL00_SEVERITY[severity], message, reading["timestamp_ns"]))
        previous = (status, severity)
        reader.wait_for_message(
            lambda m, v=value: m.schema == schema and m.source == name and m.value == v,
            since=mark,
            timeout=TIMEOUT,
            what=f"{schema} of {name} = {value}",
        )
    return reader, mark, expected_al00, initial.timestamp_ns


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_crossing_high_hihi_and_back_gives_exactly_one_al00_per_alarm_change(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    reader, _, expected, initial_ts = _run_steps(
        protocol, "f144", ioc, epics_network, control, outputs, topics
    )
    name = ioc.pv("DOUBLE")
    # Each al00 goes out with (not after) its update; the f144 of 3.0 has arrived, so every
    # al00 up to it has too. An al00 of the initial state may or may not be sent: ignore it.
    got = [m for m in reader.messages("al00", name) if m.timestamp_ns > initial_ts]
    assert [(m.severity, m.message) for m in got] == [(s, msg) for s, msg, _ in expected], (
        f"al00 over {protocol}: expected {[(s, m) for s, m, _ in expected]}, got:\n"
        + "\n".join(describe(m) for m in got)
    )
    stamps = [m.timestamp_ns for m in got]
    assert stamps == [ts for _, _, ts in expected], (
        f"al00 timestamps {stamps} are not the EPICS timestamps {[t for *_, t in expected]}"
    )


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_f142_carries_alarm_status_and_severity_in_every_message(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    reader, mark, _, _ = _run_steps(protocol, "f142", ioc, epics_network, control, outputs, topics)
    name = ioc.pv("DOUBLE")
    got = reader.messages("f142", name, since=mark)
    assert [(float(m.value), m.alarm_status, m.alarm_severity) for m in got] == [
        (v, status, severity) for v, status, severity in STEPS
    ], f"f142 over {protocol}:\n" + "\n".join(describe(m) for m in got)
    initial = reader.messages("f142", name)[0]
    assert (initial.alarm_status, initial.alarm_severity) == ("NO_ALARM", "NO_ALARM"), describe(
        initial
    )


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_al00_schema_stream_sends_the_alarm_of_each_update(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    """A stream whose data schema is al00 sends an al00 for every update."""
    name = ioc.pv("DOUBLE")
    topic = topics.new("al00")
    reader = outputs(topic)
    control_topic = topics.new("marker")
    marker = outputs(control_topic)
    streams = [Stream(name, "al00", topic, protocol), Stream(name, "f144", control_topic, protocol)]
    control.add_and_wait(streams, marker, timeout=TIMEOUT)
    epics_write(name, 25.0)
    marker.wait_for_message(
        lambda m: m.schema == "f144" and m.value == 25.0, timeout=TIMEOUT, what="25.0"
    )
    reader.wait_for(
        lambda: any(m.severity == "MAJOR" for m in reader.messages("al00", name)),
        timeout=TIMEOUT,
        what=f"an al00 MAJOR for {name}",
    )
