"""FAKE PVs, tdct, NTTables as se00/senv, and the no_op schema."""

from __future__ import annotations

import time

import numpy as np
import pytest

from helpers.flatbuffers_helpers import describe
from helpers.pvs import INT_TABLE, TABLE, TABLE_COLUMNS
from integration_tests.forwarder_fixtures import PROTOCOLS, Stream, epics_read, epics_write

TIMEOUT = 20.0
FAKE_PERIOD_MS = 1000  # fake-pv-period of config-files/forwarder.ini


def _pva_put(epics_network, name, value):
    from helpers.epics_helpers import pva_put

    pva_put(epics_network, name, value)


@pytest.mark.ess
def test_fake_pv_sends_an_update_every_fake_pv_period(
    pv_prefix, forwarder, control, outputs, topics
):
    name = f"{pv_prefix}FAKE"
    topic = topics.new("fake")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic, "FAKE")
    control.add_and_wait([stream], timeout=TIMEOUT)
    reader.wait_for_count(4, schema="f144", source=name, timeout=TIMEOUT)
    records = [r for r in reader.records if getattr(r.message, "schema", "") == "f144"]
    messages = [r.message for r in records]
    stamps = [m.timestamp_ns for m in messages]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), stamps
    assert all(not isinstance(m.value, (str, tuple)) for m in messages), reader.seen()
    gaps = [
        b.kafka_timestamp_ms - a.kafka_timestamp_ms
        for a, b in zip(records, records[1:], strict=False)
    ]
    assert all(FAKE_PERIOD_MS * 0.5 <= g <= FAKE_PERIOD_MS * 2 for g in gaps[1:]), gaps


def _tdct_of(reader, name, since=0):
    return reader.messages("tdct", name, since=since)


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tdct_carries_pv_timestamp_plus_each_offset_as_uint64(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    name = ioc.pv("CHOPPER_TIMESTAMPS")
    topic = topics.new("tdct")
    reader = outputs(topic)
    stream = Stream(name, "tdct", topic, protocol)
    [first] = control.add_and_wait([stream], reader, timeout=TIMEOUT)
    expected = []
    ts = epics_read(protocol, epics_network, name)["timestamp_ns"]
    expected.append([ts + o for o in (1000, 71_000_000, 142_000_000)])
    for offsets in ([10, 20], [30, 40, 50, 60]):
        epics_write(name, offsets)
        ts = epics_read(protocol, epics_network, name)["timestamp_ns"]
        expected.append([ts + o for o in offsets])
    got = reader.wait_for_count(3, schema="tdct", source=name, timeout=TIMEOUT)
    assert first.timestamps.dtype == np.uint64, describe(first)
    assert [m.timestamps.tolist() for m in got] == expected, "\n".join(map(describe, got))


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_array_sends_no_tdct(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    name = ioc.pv("CHOPPER_TIMESTAMPS")
    topic = topics.new("tdct-empty")
    reader = outputs(topic)
    stream = Stream(name, "tdct", topic, protocol)
    control.add_and_wait([stream], reader, timeout=TIMEOUT)
    _pva_put(epics_network, name, [])
    assert len(epics_read(protocol, epics_network, name)["value"]) == 0
    epics_write(name, [7, 8])  # the marker: the next non-empty value
    ts = epics_read(protocol, epics_network, name)["timestamp_ns"]
    got = reader.wait_for_count(2, schema="tdct", source=name, timeout=TIMEOUT)
    reader.wait_for_message(
        lambda m: m.schema == "tdct" and m.timestamps.tolist() == [ts + 7, ts + 8],
        timeout=TIMEOUT,
        what="tdct of [7, 8]",
    )
    got = _tdct_of(reader, name)
    assert len(got) == 2 and all(m.timestamps.size for m in got), "\n".join(map(describe, got))


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_array_sends_no_f144(
    protocol, ioc, epics_network, forwarder, control, outputs, topics
):
    name = ioc.pv("EMPTY_ARRAY")
    topic = topics.new("empty")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic, protocol)
    control.add_and_wait([stream], reader, timeout=TIMEOUT)
    _pva_put(epics_network, name, [])
    epics_write(name, [2.0, 3.0])
    reader.wait_for_message(
        lambda m: m.schema == "f144" and list(m.value) == [2.0, 3.0],
        timeout=TIMEOUT,
        what="f144 of [2.0, 3.0]",
    )
    got = reader.messages("f144", name)
    assert [list(m.value) for m in got] == [[9.5, 8.5], [2.0, 3.0]], "\n".join(map(describe, got))


def _table_rows(epics_network, name):
    from helpers.epics_helpers import pva_get

    raw = pva_get(epics_network, name).raw
    ts = int(raw["timeStamp.secondsPastEpoch"]) * 1_000_000_000 + int(raw["timeStamp.nanoseconds"])
    return (
        np.asarray(raw["value.value"]),
        np.asarray(raw["value.timestamp"]).astype(np.uint64),
        ts,
    )


@pytest.mark.ess
def test_nttable_se00_sends_the_table_rows_as_samples(
    table_server, epics_network, forwarder, control, outputs, topics
):
    name = table_server.pv(TABLE)
    topic = topics.new("se00")
    reader = outputs(topic)
    stream = Stream(name, "nttable_se00", topic, "PVA")
    [first] = control.add_and_wait([stream], reader, timeout=TIMEOUT)
    values, stamps, _ = _table_rows(epics_network, name)
    assert first.values.tolist() == values.tolist(), describe(first)
    assert first.values.dtype == np.dtype(TABLE_COLUMNS["value"]), describe(first)
    assert first.value_ts is not None and first.value_ts.tolist() == stamps.tolist(), (
        f"{describe(first)}: sample times {first.value_ts}, table says {stamps}"
    )
    new_stamps = [int(s) + 5_000_000 for s in stamps[:2]]
    _pva_put(epics_network, name, {"value.value": [7.5, 8.5], "value.timestamp": new_stamps})
    second = reader.wait_for_count(2, schema="se00", source=name, timeout=TIMEOUT)[1]
    assert second.values.tolist() == [7.5, 8.5], describe(second)
    assert second.value_ts.tolist() == new_stamps, describe(second)
    assert second.message_counter == first.message_counter + 1, (
        first.message_counter,
        second.message_counter,
    )


@pytest.mark.ess
def test_nttable_senv_sends_the_table_rows_as_samples(
    table_server, epics_network, forwarder, control, outputs, topics
):
    name = table_server.pv(INT_TABLE)  # senv carries integer samples only
    topic = topics.new("senv")
    reader = outputs(topic)
    stream = Stream(name, "nttable_senv", topic, "PVA")
    [first] = control.add_and_wait([stream], reader, timeout=TIMEOUT)
    values, stamps, _ = _table_rows(epics_network, name)
    assert first.values.tolist() == values.tolist(), describe(first)
    assert first.value_ts.tolist() == stamps.tolist(), describe(first)


@pytest.mark.extension
def test_nttable_senv_with_float_samples_sends_nothing_and_forwarding_goes_on(
    table_server, epics_network, forwarder, control, outputs, topics
):
    """senv has integer members only: a float table must be dropped, not break the stream
    set (the se00 stream of the same table is the marker)."""
    name = table_server.pv(TABLE)  # float64 samples (helpers.pvs.TABLE_COLUMNS)
    senv_topic, se00_topic = topics.new("senv"), topics.new("se00")
    senv, se00 = outputs(senv_topic), outputs(se00_topic)
    streams = [Stream(name, "nttable_senv", senv_topic, "PVA")]
    streams.append(Stream(name, "nttable_se00", se00_topic, "PVA"))
    control.add_and_wait(streams, se00, timeout=TIMEOUT)
    # a plausible sample time (now): a forwarder may drop implausible ones
    _pva_put(epics_network, name, {"value.value": [1.25], "value.timestamp": [time.time_ns()]})
    se00.wait_for_count(2, schema="se00", source=name, timeout=TIMEOUT)
    senv.poll()
    assert not senv.messages("senv"), senv.seen()
    assert forwarder.is_running()


@pytest.mark.ess
def test_empty_nttable_sends_no_se00(
    table_server, epics_network, forwarder, control, outputs, topics
):
    from helpers.pvs import EMPTY_TABLE

    empty, full = table_server.pv(EMPTY_TABLE), table_server.pv(TABLE)
    topic = topics.new("se00-empty")
    reader = outputs(topic)
    streams = [
        Stream(empty, "nttable_se00", topic, "PVA"),
        Stream(full, "nttable_se00", topic, "PVA"),
    ]
    control.add_and_wait(streams, timeout=TIMEOUT)
    reader.wait_for_count(1, schema="se00", source=full, timeout=TIMEOUT)
    # the marker: the empty table's subscription is as old as the full one's
    _pva_put(epics_network, full, {"value.value": [4.5], "value.timestamp": [time.time_ns()]})
    reader.wait_for_count(2, schema="se00", source=full, timeout=TIMEOUT)
    assert not reader.messages("se00", empty), reader.seen()


@pytest.mark.ess
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_op_stream_sends_only_al00_and_ep01(protocol, ioc, forwarder, control, outputs, topics):
    name = ioc.pv("DOUBLE")
    topic, marker_topic = topics.new("noop"), topics.new("marker")
    reader, marker = outputs(topic), outputs(marker_topic)
    streams = [Stream(name, "no_op", topic, protocol), Stream(name, "f144", marker_topic, protocol)]
    control.add_and_wait(streams, timeout=TIMEOUT)
    reader.wait_for_message(
        lambda m: m.schema == "ep01" and m.status == "CONNECTED",
        timeout=TIMEOUT,
        what="ep01 CONNECTED of the no_op stream",
    )
    epics_write(name, 25.0)  # into HIHI: an alarm change
    marker.wait_for_message(
        lambda m: m.schema == "f144" and float(m.value) == 25.0, timeout=TIMEOUT, what="25.0"
    )
    reader.wait_for_message(
        lambda m: m.schema == "al00" and m.severity == "MAJOR",
        timeout=TIMEOUT,
        what="al00 MAJOR of the no_op stream",
    )
    schemas = {getattr(r.message, "schema", "?") for r in reader.records}
    assert schemas <= {"al00", "ep01"}, f"no_op stream sent {sorted(schemas)}: {reader.seen()}"
