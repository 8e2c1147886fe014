"""Periodic streams: with pv-update-period=500 (forwarder_idle_updates.ini) a stream added
with periodic=1 re-sends its last value every 500 ms while the PV is idle; periodic=0 never.

The IOC's records are all SCAN Passive: nothing changes unless a test puts, so any message
after the initial one is a re-send.
"""

from __future__ import annotations

import pytest

from helpers.flatbuffers_helpers import describe
from helpers.pvs import COUNTER_RUN, counter_suffixes
from integration_tests.forwarder_fixtures import PROTOCOLS, Stream, epics_read, epics_write

PERIOD_MS = 500
TIMEOUT = 20.0


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_idle_periodic_stream_is_resent_every_period_with_identical_payload(
    protocol, ioc, forwarder_idle_updates, control_factory, outputs, topics
):
    control = control_factory(forwarder_idle_updates)
    name = ioc.pv("DOUBLE")
    topic = topics.new("periodic")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic, protocol, periodic=True)
    control.add_and_wait([stream], timeout=TIMEOUT)
    reader.wait_for_count(6, schema="f144", source=name, timeout=TIMEOUT)
    records = [
        r
        for r in reader.records
        if getattr(r.message, "schema", "") == "f144" and r.message.source == name
    ]
    payloads = {r.value for r in records}
    assert len(payloads) == 1, "re-sends differ from the original:\n" + "\n".join(
        describe(r.message) for r in records
    )
    stamps = [r.kafka_timestamp_ms for r in records]
    gaps = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]
    assert all(PERIOD_MS * 0.5 <= g <= PERIOD_MS * 2.5 for g in gaps), (
        f"gaps between re-sends {gaps} ms, expected about {PERIOD_MS}"
    )


@pytest.mark.ess
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
    control.add_and_wait(streams, reader, timeout=TIMEOUT)
    # The marker: the periodic stream of the same forwarder re-sends 5 times meanwhile.
    marker.wait_for_count(6, schema="f144", source=periodic, timeout=TIMEOUT)
    reader.poll()
    sent = reader.messages("f144", once)
    assert len(sent) == 1, "a non-periodic stream was re-sent:\n" + "\n".join(map(describe, sent))


@pytest.mark.ess
def test_resends_stop_after_remove(ioc, forwarder_idle_updates, control_factory, outputs, topics):
    control = control_factory(forwarder_idle_updates)
    removed, kept = ioc.pv("DOUBLE"), ioc.pv("LONG")
    topic, marker_topic = topics.new("removed"), topics.new("kept")
    reader, marker = outputs(topic), outputs(marker_topic)
    streams = [
        Stream(removed, "f144", topic, periodic=True),
        Stream(kept, "f144", marker_topic, periodic=True),
    ]
    control.add_and_wait(streams, timeout=TIMEOUT)
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


def _periodic_records(reader, name):
    """(kafka timestamp ms, EPICS timestamp ms, payload) of every f144 of ``name``."""
    return [
        (r.kafka_timestamp_ms, r.message.timestamp_ns // 1_000_000, r.value)
        for r in reader.records
        if getattr(r.message, "schema", "") == "f144" and r.message.source == name
    ]


def _early_resends(records) -> list[int]:
    """For each re-send (a record repeating the payload before it) that came less than a
    period after the newest real update: how many ms after it. Both times are this host's
    clock in whole ms, so only rounding is allowed for."""
    updates = [
        epics
        for (_, epics, payload), (_, _, before) in zip(
            records, [(None, None, None), *records], strict=False
        )
        if payload != before
    ]
    early = []
    for (sent_ms, _, payload), (_, _, before) in zip(records[1:], records, strict=False):
        if payload != before:
            continue
        newest = max((t for t in updates if t <= sent_ms), default=None)
        if newest is not None and sent_ms - newest < PERIOD_MS - 2:
            early.append(sent_ms - newest)
    return early


@pytest.mark.extension
def test_pv_updating_faster_than_the_period_gets_no_resends(
    ioc, forwarder_idle_updates, control_factory, outputs, topics
):
    """Re-sends fill silence only: a counter at 10 Hz never goes a period without an update,
    so every f144 on the topic is a new value (a repeat would be a re-send)."""
    control = control_factory(forwarder_idle_updates)
    name = ioc.pv(counter_suffixes(1)[0])
    topic = topics.new("busy")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic, periodic=True)
    control.add_and_wait([stream], timeout=TIMEOUT)
    epics_write(ioc.pv(COUNTER_RUN), 1)
    try:
        reader.wait_for_count(25, schema="f144", source=name, timeout=TIMEOUT)
    finally:
        epics_write(ioc.pv(COUNTER_RUN), 0)
    early = _early_resends(_periodic_records(reader, name))
    assert not early, f"re-sent while the PV updated every 100 ms (ms after an update): {early}"


@pytest.mark.extension
def test_quiet_pv_is_resent_only_after_a_full_idle_period_and_an_update_restarts_it(
    ioc, forwarder_idle_updates, control_factory, outputs, topics
):
    """The re-send timer counts from the last real update, not at a fixed rate: a put made
    just after a re-send moves the next re-send a full period after the put."""
    control = control_factory(forwarder_idle_updates)
    name = ioc.pv("DOUBLE")
    topic = topics.new("quiet")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic, periodic=True)
    control.add_and_wait([stream], timeout=TIMEOUT)
    for value in (2.5, 3.5):
        reader.wait_for_count(2, schema="f144", source=name, timeout=TIMEOUT, what="a re-send")
        mark = reader.mark()
        reader.wait_for_count(
            1, schema="f144", source=name, since=mark, timeout=TIMEOUT, what="the next re-send"
        )
        epics_write(name, value)  # just after a re-send: mid-way through a fixed-rate period
        reader.wait_for_message(
            lambda m, v=value: m.schema == "f144" and float(m.value) == v,
            timeout=TIMEOUT,
            what=f"{name} = {value}",
        )
    reader.wait_for(
        lambda: [float(m.value) for m in reader.messages("f144", name)][-2:] == [3.5, 3.5],
        timeout=TIMEOUT,
        what="a re-send of 3.5",
    )
    early = _early_resends(_periodic_records(reader, name))
    assert not early, f"re-sent only {early} ms after the last update (period {PERIOD_MS} ms)"


@pytest.mark.ess
def test_every_record_is_keyed_by_the_pv_name(
    ioc, forwarder_idle_updates, control_factory, outputs, topics
):
    """Consumers partition and compact by PV: data, al00, ep01 and re-sends all carry the
    PV name as the Kafka key."""
    control = control_factory(forwarder_idle_updates)
    name = ioc.pv("DOUBLE")
    topic = topics.new("keys")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic, periodic=True)
    control.add_and_wait([stream], timeout=TIMEOUT)
    reader.wait_for_count(1, schema="ep01", source=name, timeout=TIMEOUT)
    epics_write(name, 25.0)  # above HIHI: an al00 too
    reader.wait_for_count(1, schema="al00", source=name, timeout=TIMEOUT)
    reader.wait_for(
        lambda: [float(m.value) for m in reader.messages("f144", name)][-2:] == [25.0, 25.0],
        timeout=TIMEOUT,
        what="a re-send of 25.0",
    )
    kinds = {getattr(r.message, "schema", "?") for r in reader.records}
    assert {"ep01", "al00", "f144"} <= kinds, reader.seen()
    wrong = [(describe(r.message), r.key) for r in reader.records if r.key != name.encode()]
    assert not wrong, f"records not keyed {name!r}: {wrong}"


@pytest.mark.ess
def test_kafka_timestamp_is_the_epics_time_for_data_and_the_send_time_for_resends(
    ioc, forwarder_idle_updates, control_factory, outputs, topics
):
    """Consumers seek by Kafka time: a data record carries its EPICS timestamp in ms, a
    re-send the time it was sent (its payload keeps the original EPICS time)."""
    control = control_factory(forwarder_idle_updates)
    name = ioc.pv("DOUBLE")
    topic = topics.new("times")
    reader = outputs(topic)
    initial = epics_read("CA", None, name)  # processed at IOC start, long before the ADD
    stream = Stream(name, "f144", topic, periodic=True)
    control.add_and_wait([stream], reader, timeout=TIMEOUT)
    kafka_ms, epics_ms, _ = _periodic_records(reader, name)[0]
    assert kafka_ms == initial["timestamp_ns"] // 1_000_000 == epics_ms, (
        f"initial value: Kafka time {kafka_ms}, EPICS time {initial['timestamp_ns'] // 1_000_000}"
    )
    epics_write(name, 4.25)
    put = epics_read("CA", None, name)
    reader.wait_for(
        lambda: [float(m.value) for m in reader.messages("f144", name)][-3:] == [4.25] * 3,
        timeout=TIMEOUT,
        what="two re-sends of 4.25",
    )
    records = [r for r in _periodic_records(reader, name)]
    data = [r for r in records if r[2] == records[-1][2]]
    first, resends = data[0], data[1:]
    assert first[0] == put["timestamp_ns"] // 1_000_000 == first[1], (
        f"data record: Kafka time {first[0]}, EPICS time {put['timestamp_ns'] // 1_000_000} ms"
    )
    for number, (kafka_ms, epics_ms, _) in enumerate(resends, 1):
        assert kafka_ms >= epics_ms + number * PERIOD_MS * 0.9, (
            f"re-send {number}: Kafka time {kafka_ms} is not its send time "
            f"(EPICS time {epics_ms}, period {PERIOD_MS} ms)"
        )
