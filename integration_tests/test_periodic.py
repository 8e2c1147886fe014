"""Periodic streams: with pv-update-period=500 (forwarder_idle_updates.ini) a stream added
with periodic=1 re-sends its last value every 500 ms while the PV is idle; periodic=0 never.

The IOC's records are all SCAN Passive: nothing changes unless a test puts, so any message
after the initial one is a re-send.
"""

from __future__ import annotations

import pytest

from helpers.flatbuffers_helpers import describe
from integration_tests.forwarder_fixtures import PROTOCOLS, Stream

pytestmark = pytest.mark.ess


PERIOD_MS = 500
TIMEOUT = 20.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_idle_periodic_stream_is_resent_every_period_with_identical_payload(
    protocol, ioc, forwarder_idle_updates, control_factory, outputs, topics
):
    control = control_factory(forwarder_idle_updates)
    name = ioc.pv("DOUBLE")
    topic = topics.new("periodic")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic, protocol, periodic=True)
    control.add([stream])
    control.wait_for_streams([stream], timeout=TIMEOUT)
    reader.wait_for_count(6, schema="f144", source=name, timeout=TIMEOUT)
    records = [
        r
        for r in reader.records
        if getattr(r.message, "schema", "") == "f144" and r.message.source == name
    ]
    payloads = {r.payload for r in records}
    assert len(payloads) == 1, "re-sends differ from the original:\n" + "\n".join(
        describe(r.message) for r in records
    )
    stamps = [r.kafka_timestamp_ms for r in records]
    gaps = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]
    assert all(PERIOD_MS * 0.5 <= g <= PERIOD_MS * 2.5 for g in gaps), (
        f"gaps between re-sends {gaps} ms, expected about {PERIOD_MS}"
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_non_periodic_stream_of_an_idle_pv_is_sent_once(
    protocol, ioc, forwarder_idle_updates, control_factory, outputs, topics
):
    control = control_factory(forwarder_idle_updates)
    once, periodic = ioc.pv("LONG"), ioc.pv("DOUBLE")
    topic, marker_topic = topics.new("once"), topics.new("marker")
    reader, marker = outputs(topic), outputs(marker_topic)
    streams = [
        Stream(once, "f144", topic, protocol, periodic=False),
        Stream(periodic, "f144", marker_topic, protocol, periodic=True),
    ]
    control.add(streams)
    control.wait_for_streams(streams, timeout=TIMEOUT)
    reader.wait_for_count(1, schema="f144", source=once, timeout=TIMEOUT)
    # The marker: the periodic stream of the same forwarder re-sends 5 times meanwhile.
    marker.wait_for_count(6, schema="f144", source=periodic, timeout=TIMEOUT)
    reader.poll()
    sent = reader.messages("f144", once)
    assert len(sent) == 1, "a non-periodic stream was re-sent:\n" + "\n".join(map(describe, sent))


def test_resends_stop_after_remove(ioc, forwarder_idle_updates, control_factory, outputs, topics):
    control = control_factory(forwarder_idle_updates)
    removed, kept = ioc.pv("DOUBLE"), ioc.pv("LONG")
    topic, marker_topic = topics.new("removed"), topics.new("kept")
    reader, marker = outputs(topic), outputs(marker_topic)
    streams = [
        Stream(removed, "f144", topic, periodic=True),
        Stream(kept, "f144", marker_topic, periodic=True),
    ]
    control.add(streams)
    control.wait_for_streams(streams, timeout=TIMEOUT)
    reader.wait_for_count(3, schema="f144", source=removed, timeout=TIMEOUT)
    sent_at = control.remove(channel=removed)
    status = control.wait_for_streams(streams[1:], timeout=TIMEOUT, since_ms=int(sent_at * 1000))
    marker_mark = marker.mark()
    marker.wait_for_count(
        5,
        schema="f144",
        source=kept,
        since=marker_mark,
        timeout=TIMEOUT,
        what="5 more re-sends of the kept stream",
    )
    reader.poll()
    late = [
        r
        for r in reader.records
        if getattr(r.message, "source", "") == removed
        and r.kafka_timestamp_ms > status.kafka_timestamp_ms
    ]
    assert not late, "re-sent after REMOVE: " + "; ".join(describe(r.message) for r in late)
