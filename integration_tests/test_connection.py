"""Connection status: every stream sends ep01 next to its data when its PV (dis)connects."""

from __future__ import annotations

import pytest

from helpers.flatbuffers_helpers import describe
from integration_tests.forwarder_fixtures import PROTOCOLS, Stream, epics_read, epics_write

TIMEOUT = 30.0


def _statuses(reader, name, since=0):
    return [m.status for m in reader.messages("ep01", name, since=since)]


def _configure(protocol, ioc, control, outputs, topics, suffix="DOUBLE"):
    name = ioc.pv(suffix)
    topic = topics.new("conn")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic, protocol)
    control.add_and_wait([stream], timeout=TIMEOUT)
    return name, reader


def _wait_status(reader, name, status, since=0):
    return reader.wait_for_message(
        lambda m: m.schema == "ep01" and m.source == name and m.status == status,
        since=since,
        timeout=TIMEOUT,
        what=f"ep01 {status} for {name}",
    )


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subscribing_to_a_live_pv_sends_ep01_connected(
    protocol, ioc, forwarder, control, outputs, topics
):
    name, reader = _configure(protocol, ioc, control, outputs, topics)
    message = _wait_status(reader, name, "CONNECTED")
    reader.wait_for_count(1, schema="f144", source=name, timeout=TIMEOUT)
    assert message.timestamp_ns > 0, describe(message)
    assert "DISCONNECTED" not in _statuses(reader, name), reader.seen()


@pytest.mark.extension
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pv_configured_before_its_ioc_exists_is_never_connected_then_connected(
    protocol, ioc_not_started, epics_network, forwarder, control, outputs, topics
):
    ioc = ioc_not_started
    name, reader = _configure(protocol, ioc, control, outputs, topics)
    _wait_status(reader, name, "NEVER_CONNECTED")
    assert not reader.messages("f144", name), "a value arrived from a PV that does not exist"
    mark = len(reader.records)
    ioc.start()
    _wait_status(reader, name, "CONNECTED", since=mark)
    value = reader.wait_for_count(1, schema="f144", source=name, since=mark, timeout=TIMEOUT)[0]
    assert float(value.value) == 1.5, describe(value)
    assert value.timestamp_ns == epics_read(protocol, epics_network, name)["timestamp_ns"]
    order = _statuses(reader, name)
    assert order.index("NEVER_CONNECTED") < order.index("CONNECTED"), order


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stopping_the_ioc_sends_disconnected_and_restarting_it_reconnects_with_the_value(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    name, reader = _configure(protocol, ioc, control, outputs, topics)
    _wait_status(reader, name, "CONNECTED")
    reader.wait_for_count(1, schema="f144", source=name, timeout=TIMEOUT)
    sent_before = len(control.sent)

    mark = len(reader.records)
    ioc.stop()
    _wait_status(reader, name, "DISCONNECTED", since=mark)

    mark = len(reader.records)
    ioc.start()
    _wait_status(reader, name, "CONNECTED", since=mark)
    value = reader.wait_for_count(1, schema="f144", source=name, since=mark, timeout=TIMEOUT)[0]
    reading = epics_read(protocol, epics_network, name)
    assert float(value.value) == float(reading["value"]), describe(value)
    assert value.timestamp_ns == reading["timestamp_ns"], (
        f"{describe(value)} is not the restarted IOC's value (timestamp {reading['timestamp_ns']})"
    )
    assert len(control.sent) == sent_before, "the test reconfigured the forwarder"


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stopping_the_ioc_keeps_the_stream_configured(
    protocol, ioc, forwarder, control, outputs, topics
):
    name, reader = _configure(protocol, ioc, control, outputs, topics)
    _wait_status(reader, name, "CONNECTED")
    ioc.stop()
    _wait_status(reader, name, "DISCONNECTED")
    since = control.statuses[-1].kafka_timestamp_ms + 1 if control.statuses else None
    control.wait_for_streams(
        [(name, protocol, reader.topic, "f144")], timeout=TIMEOUT, since_ms=since
    )


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stream_added_later_on_an_already_watched_pv_gets_connected_and_the_current_value(
    protocol, ioc, forwarder, control, outputs, topics
):
    """A second stream of a PV (another schema and topic) must not depend on the PV's first
    connection: it gets its own ep01 CONNECTED and the value the PV has now."""
    name, first = _configure(protocol, ioc, control, outputs, topics)
    _wait_status(first, name, "CONNECTED")
    epics_write(name, 3.25)
    first.wait_for_message(
        lambda m: m.schema == "f144" and float(m.value) == 3.25,
        timeout=TIMEOUT,
        what=f"{name} = 3.25 on the first stream",
    )
    later_topic = topics.new("later")
    later = outputs(later_topic)
    streams = [
        Stream(name, "f144", first.topic, protocol),
        Stream(name, "f142", later_topic, protocol),
    ]
    control.add(streams[1:])
    control.wait_for_streams(streams, timeout=TIMEOUT)
    _wait_status(later, name, "CONNECTED")
    current = later.wait_for_count(1, schema="f142", source=name, timeout=TIMEOUT)[0]
    assert float(current.value) == 3.25, describe(current)
