"""fc00 commands on the config topic: ADD, REMOVE (exact, wildcards, topic), REMOVEALL,
REPLACE, invalid streams and broken messages.

"Nothing arrives" is always shown against a positive marker: after the change that must stop
a stream, a PV that is still forwarded is changed too, and its update is waited for.
"""

from __future__ import annotations

import pytest
from streaming_data_types import serialise_f144
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType

from helpers.flatbuffers_helpers import describe
from helpers.forwarder_control import fc00
from helpers.kafka_helpers import TopicReader, create_topics
from helpers.polling import wait_until
from helpers.pvs import COUNTER_RUN, counter_suffixes
from integration_tests.forwarder_fixtures import (
    Stream,
    epics_write,
    frozen,
    stop_counters,
    wait_counter_steps,
    wait_counters_end_stepping_by_one,
)

TIMEOUT = 20.0


def _value_of(reader, name, value, since=0, schema="f144"):
    return reader.wait_for_message(
        lambda m: m.schema == schema and m.source == name and float(m.value) == value,
        since=since,
        timeout=TIMEOUT,
        what=f"{schema} of {name} = {value}",
    )


def _f144_values(reader, name, since=0):
    return [float(m.value) for m in reader.messages("f144", name, since=since)]


def _stopped_while_marker_flows(reader, stopped, marker_reader, marker_pv, marker_value):
    """Put to every PV in ``stopped`` (suffix -> value), then to ``marker_pv``; wait for the
    marker; return what the stopped PVs sent after the puts started."""
    mark = reader.mark()
    for name, value in stopped.items():
        epics_write(name, value)
    epics_write(marker_pv, marker_value)
    _value_of(marker_reader, marker_pv, marker_value)
    reader.poll(timeout_ms=200)
    return [m for name in stopped for m in reader.messages("f144", name, since=mark)]


@pytest.mark.ess
def test_duplicate_add_gives_no_duplicate_output(ioc, forwarder, control, outputs, topics):
    name = ioc.pv("DOUBLE")
    topic = topics.new("dup")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic)
    control.add_and_wait([stream], timeout=TIMEOUT)
    _value_of(reader, name, 1.5)
    since = control.add([stream]) * 1000
    control.wait_for_streams([stream], timeout=TIMEOUT, since_ms=int(since))
    epics_write(name, 2.5)
    _value_of(reader, name, 2.5)
    epics_write(name, 3.5)
    _value_of(reader, name, 3.5)
    assert _f144_values(reader, name) == [1.5, 2.5, 3.5], reader.seen()


@pytest.mark.ess
def test_same_pv_to_two_topics_gives_two_independent_streams(
    ioc, forwarder, control, outputs, topics
):
    name = ioc.pv("DOUBLE")
    topic_a, topic_b = topics.new("a"), topics.new("b")
    reader_a, reader_b = outputs(topic_a), outputs(topic_b)
    streams = [Stream(name, "f144", topic_a), Stream(name, "f144", topic_b)]
    # The initial values first: a put while the monitor connects can fold into them.
    control.add_and_wait(streams, reader_a, reader_b, timeout=TIMEOUT)
    epics_write(name, 4.5)
    for reader in (reader_a, reader_b):
        _value_of(reader, name, 4.5)
        assert _f144_values(reader, name) == [1.5, 4.5], reader.seen()


@pytest.mark.ess
def test_same_pv_with_two_schemas_to_one_topic_gives_two_streams(
    ioc, forwarder, control, outputs, topics
):
    name = ioc.pv("DOUBLE")
    topic = topics.new("two-schemas")
    reader = outputs(topic)
    streams = [Stream(name, "f144", topic), Stream(name, "f142", topic)]
    control.add_and_wait(streams, timeout=TIMEOUT)
    epics_write(name, 4.5)
    _value_of(reader, name, 4.5, schema="f144")
    _value_of(reader, name, 4.5, schema="f142")


@pytest.mark.ess
def test_remove_by_exact_name_stops_only_that_pv(ioc, forwarder, control, outputs, topics):
    double, long_ = ioc.pv("DOUBLE"), ioc.pv("LONG")
    topic = topics.new("rm")
    reader = outputs(topic)
    streams = [Stream(double, "f144", topic), Stream(long_, "f144", topic)]
    control.add_and_wait(streams, timeout=TIMEOUT)
    _value_of(reader, double, 1.5)
    _value_of(reader, long_, 42)
    since = control.remove(channel=double)
    control.wait_for_streams([streams[1]], timeout=TIMEOUT, since_ms=int(since * 1000))
    leaked = _stopped_while_marker_flows(reader, {double: 7.5}, reader, long_, 43)
    assert not leaked, "removed PV still forwarded: " + "; ".join(map(describe, leaked))


@pytest.mark.ess
def test_remove_with_star_and_question_mark_wildcards(ioc, forwarder, control, outputs, topics):
    pv = ioc.pv
    topic = topics.new("wild")
    reader = outputs(topic)
    names = ["DOUBLE", "DOUBLE_ARRAY", "LONG", "LONG_ARRAY", "SHORT"]
    streams = {n: Stream(pv(n), "f144", topic) for n in names}
    control.add_and_wait(streams.values(), reader, timeout=TIMEOUT)

    since = control.remove(channel=pv("DOUB*"))  # DOUBLE and DOUBLE_ARRAY
    left = [streams[n] for n in ("LONG", "LONG_ARRAY", "SHORT")]
    control.wait_for_streams(left, timeout=TIMEOUT, since_ms=int(since * 1000))

    since = control.remove(channel=pv("LON?"))  # LONG only, not LONG_ARRAY
    left = [streams[n] for n in ("LONG_ARRAY", "SHORT")]
    control.wait_for_streams(left, timeout=TIMEOUT, since_ms=int(since * 1000))

    since = control.remove(channel=ioc.prefix + "?HORT")
    control.wait_for_streams([streams["LONG_ARRAY"]], timeout=TIMEOUT, since_ms=int(since * 1000))

    reader.wait_for_count(1, schema="f144", source=pv("LONG_ARRAY"), timeout=TIMEOUT)
    # LONG_ARRAY, which no pattern matched, is the positive marker.
    mark = reader.mark()
    epics_write(pv("DOUBLE"), 7.5)
    epics_write(pv("DOUBLE_ARRAY"), [1.0, 2.0])
    epics_write(pv("LONG"), 43)
    epics_write(pv("SHORT"), 3)
    epics_write(pv("LONG_ARRAY"), [5, 6])
    reader.wait_for_message(
        lambda m: m.schema == "f144" and m.source == pv("LONG_ARRAY") and list(m.value) == [5, 6],
        since=mark,
        timeout=TIMEOUT,
        what="LONG_ARRAY = [5, 6] (the stream no pattern matched)",
    )
    leaked = [m for m in reader.messages("f144", since=mark) if m.source != pv("LONG_ARRAY")]
    assert not leaked, "removed PVs still forwarded: " + "; ".join(map(describe, leaked))


@pytest.mark.ess
def test_remove_by_topic_stops_every_stream_to_that_topic(ioc, forwarder, control, outputs, topics):
    double, long_ = ioc.pv("DOUBLE"), ioc.pv("LONG")
    gone, kept = topics.new("gone"), topics.new("kept")
    gone_reader, kept_reader = outputs(gone), outputs(kept)
    streams = [
        Stream(double, "f144", gone),
        Stream(long_, "f144", gone),
        Stream(double, "f144", kept),
    ]
    control.add_and_wait(streams, timeout=TIMEOUT)
    _value_of(gone_reader, double, 1.5)
    _value_of(gone_reader, long_, 42)
    since = control.remove(topic=gone)
    control.wait_for_streams(streams[2:], timeout=TIMEOUT, since_ms=int(since * 1000))
    mark = gone_reader.mark()
    epics_write(long_, 43)
    epics_write(double, 8.5)
    _value_of(kept_reader, double, 8.5)
    gone_reader.poll(timeout_ms=200)
    leaked = gone_reader.messages("f144", since=mark)
    assert not leaked, "streams to a removed topic still forwarded: " + "; ".join(
        map(describe, leaked)
    )


@pytest.mark.ess
def test_remove_by_channel_and_schema_keeps_the_other_schema(
    ioc, forwarder, control, outputs, topics
):
    name = ioc.pv("DOUBLE")
    topic = topics.new("schema")
    reader = outputs(topic)
    streams = [Stream(name, "f144", topic), Stream(name, "f142", topic)]
    control.add_and_wait(streams, timeout=TIMEOUT)
    _value_of(reader, name, 1.5, schema="f144")
    _value_of(reader, name, 1.5, schema="f142")
    since = control.remove(channel=name, schema="f142")
    control.wait_for_streams(streams[:1], timeout=TIMEOUT, since_ms=int(since * 1000))
    mark = reader.mark()
    epics_write(name, 9.5)
    _value_of(reader, name, 9.5, since=mark, schema="f144")
    leaked = reader.messages("f142", name, since=mark)
    assert not leaked, "removed f142 stream still forwarded: " + "; ".join(map(describe, leaked))


@pytest.mark.ess
def test_removeall_stops_everything(ioc, forwarder, control, outputs, topics):
    double, long_ = ioc.pv("DOUBLE"), ioc.pv("LONG")
    topic, marker_topic = topics.new("all"), topics.new("marker")
    reader, marker = outputs(topic), outputs(marker_topic)
    streams = [Stream(double, "f144", topic), Stream(long_, "f144", topic)]
    control.add_and_wait(streams, timeout=TIMEOUT)
    _value_of(reader, double, 1.5)
    _value_of(reader, long_, 42)
    since = control.remove_all()
    control.wait_for_streams([], timeout=TIMEOUT, since_ms=int(since * 1000))
    # The marker: a stream added after REMOVEALL, of a third PV.
    marker_stream = Stream(ioc.pv("SHORT"), "f144", marker_topic)
    control.add_and_wait([marker_stream], timeout=TIMEOUT)
    _value_of(marker, ioc.pv("SHORT"), 7)
    leaked = _stopped_while_marker_flows(
        reader, {double: 6.5, long_: 44}, marker, ioc.pv("SHORT"), 8
    )
    assert not leaked, "streams still forwarded after REMOVEALL: " + "; ".join(
        map(describe, leaked)
    )


@pytest.mark.ess
def test_replace_swaps_the_whole_configuration(ioc, forwarder, control, outputs, topics):
    double, long_, short = ioc.pv("DOUBLE"), ioc.pv("LONG"), ioc.pv("SHORT")
    topic = topics.new("replace")
    reader = outputs(topic)
    old = [Stream(double, "f144", topic), Stream(long_, "f144", topic)]
    control.add_and_wait(old, timeout=TIMEOUT)
    _value_of(reader, double, 1.5)
    _value_of(reader, long_, 42)
    new = [Stream(short, "f144", topic), Stream(long_, "f142", topic)]
    since = control.replace(new)
    control.wait_for_streams(new, timeout=TIMEOUT, since_ms=int(since * 1000))
    mark = reader.mark()
    epics_write(double, 5.5)
    epics_write(long_, 45)
    epics_write(short, 9)
    _value_of(reader, short, 9, since=mark)
    _value_of(reader, long_, 45, since=mark, schema="f142")
    leaked = reader.messages("f144", double, since=mark) + reader.messages(
        "f144", long_, since=mark
    )
    assert not leaked, "replaced streams still forwarded: " + "; ".join(map(describe, leaked))


@pytest.mark.ess
def test_invalid_streams_are_skipped_while_valid_ones_in_the_same_add_apply(
    ioc, forwarder, control, outputs, topics
):
    name = ioc.pv("DOUBLE")
    topic = topics.new("valid")
    reader = outputs(topic)
    valid = Stream(name, "f144", topic)
    invalid = [
        Stream(ioc.pv("LONG"), "nonsense_schema", topic),
        Stream("", "f144", topic),
        Stream(ioc.pv("SHORT"), "f144", ""),
        Stream(ioc.pv("LONG"), "", topic),
    ]
    since = control.add([invalid[0], invalid[1], valid, invalid[2], invalid[3]])
    status = control.wait_for_status(
        lambda r: r.streams,
        timeout=TIMEOUT,
        since_ms=int(since * 1000),
        what="a status listing the valid stream",
    )
    assert status.streams == {valid.key}, f"status lists {sorted(status.streams)}"
    _value_of(reader, name, 1.5)
    assert forwarder.is_running()


@pytest.mark.ess
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"this is not a flatbuffer", id="junk"),
        pytest.param(serialise_f144("x", 1.0, 1), id="wrong-schema-id"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\x00\x00\x00fc00", id="identifier-only"),
    ],
)
def test_broken_config_messages_are_ignored_and_forwarding_goes_on(
    bad, ioc, forwarder, control, outputs, topics
):
    name, other = ioc.pv("DOUBLE"), ioc.pv("LONG")
    topic = topics.new("survive")
    reader = outputs(topic)
    before = Stream(name, "f144", topic)
    control.add_and_wait([before], timeout=TIMEOUT)
    _value_of(reader, name, 1.5)
    control.send_raw(bad)
    after = Stream(other, "f144", topic)
    control.add([after])
    control.wait_for_streams([before, after], timeout=TIMEOUT)
    epics_write(name, 2.5)
    _value_of(reader, name, 2.5)
    _value_of(reader, other, 42)
    assert forwarder.is_running()


@pytest.mark.ess
def test_truncated_config_message_is_ignored_and_forwarding_goes_on(
    ioc, forwarder, control, outputs, topics
):
    name = ioc.pv("DOUBLE")
    topic = topics.new("truncated")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic)
    full = fc00(UpdateType.ADD, [Stream(ioc.pv("SHORT"), "f144", topic)])
    for cut in (12, len(full) // 2, len(full) - 8):
        control.send_raw(full[:cut])
    control.add([stream])
    status = control.wait_for_status(
        lambda r: stream.key in r.streams, timeout=TIMEOUT, what=f"{stream.key} in the status"
    )
    assert forwarder.is_running()
    _value_of(reader, name, 1.5)
    epics_write(name, 2.5)
    _value_of(reader, name, 2.5)
    # A truncated ADD must not half-apply as garbage: whatever it added must be the real PV.
    for channel, _, _, _ in status.streams:
        assert channel in (name, ioc.pv("SHORT")), f"garbage stream {channel!r} in status"


@pytest.mark.ess
def test_hundred_adds_back_to_back_all_appear_in_status(
    pv_prefix, forwarder, control, outputs, topics
):
    topic = topics.new("many")
    streams = [Stream(f"{pv_prefix}NOPE{i:03d}", "f144", topic) for i in range(100)]
    for stream in streams:
        control.add([stream])
    control.wait_for_streams(streams, timeout=60.0)
    assert forwarder.is_running()


@pytest.mark.extension
def test_replace_with_only_invalid_streams_changes_nothing(
    ioc, forwarder, control, outputs, topics
):
    double, long_, short = ioc.pv("DOUBLE"), ioc.pv("LONG"), ioc.pv("SHORT")
    topic, marker_topic = topics.new("kept"), topics.new("marker")
    reader, marker = outputs(topic), outputs(marker_topic)
    old = [Stream(double, "f144", topic), Stream(long_, "f144", topic)]
    control.add_and_wait(old, timeout=TIMEOUT)
    _value_of(reader, double, 1.5)
    _value_of(reader, long_, 42)
    # One typo in a schema name, one illegal topic: nothing in this REPLACE is valid.
    control.replace([Stream(short, "f14", topic), Stream(short, "f144", "bad topic!")])
    # The marker: an ADD sent after the REPLACE, so its status shows the REPLACE was handled.
    marker_stream = Stream(short, "f144", marker_topic)
    control.add([marker_stream])
    control.wait_for_streams(old + [marker_stream], timeout=TIMEOUT)
    _value_of(marker, short, 7)
    mark = reader.mark()
    epics_write(double, 6.5)
    epics_write(long_, 46)
    _value_of(reader, double, 6.5, since=mark)
    _value_of(reader, long_, 46, since=mark)
    assert forwarder.is_running()


ILLEGAL_TOPICS = ["bad topic!", ".", "..", "a/b", "t" * 300]


@pytest.mark.extension
def test_streams_to_illegal_topic_names_are_rejected_by_name(
    ioc, forwarder, control, outputs, topics
):
    name = ioc.pv("DOUBLE")
    topic = topics.new("legal")
    reader = outputs(topic)
    valid = Stream(name, "f144", topic)
    illegal = [Stream(ioc.pv("LONG"), "f144", bad) for bad in ILLEGAL_TOPICS]
    since = control.add([illegal[0], valid, *illegal[1:]])
    status = control.wait_for_status(
        lambda r: r.streams,
        timeout=TIMEOUT,
        since_ms=int(since * 1000),
        what="a status listing the valid stream",
    )
    assert status.streams == {valid.key}, f"status lists {sorted(status.streams)}"
    _value_of(reader, name, 1.5)

    def unnamed():
        log = forwarder.log_tail(2000)
        return [bad for bad in ILLEGAL_TOPICS if f"topic={bad!r}" not in log]

    wait_until(
        lambda: not unnamed(),
        timeout=TIMEOUT,
        what="a log line naming each illegal topic",
        seen=lambda: f"not named: {[t[:20] for t in unnamed()]}",
    )
    assert "not a legal Kafka topic name" in forwarder.log_tail(2000)


LOAD_COUNTERS = 20
BACKLOG_UPDATES = 10  # per counter, held by the producer when the REMOVE comes


@pytest.mark.extension
def test_removing_one_stream_under_load_loses_no_update_of_the_others(
    ioc, output_kafka, forwarder_factory, control_factory, topics
):
    """The producer is shared by all streams: removing one must not close, purge or flush
    away what the others have queued or send later. So the REMOVE comes while the producer
    holds a backlog: the data broker is frozen, the commands' broker is not."""
    forwarder = forwarder_factory(output_kafka=output_kafka)
    control = control_factory(forwarder)
    counters = [ioc.pv(s) for s in counter_suffixes(LOAD_COUNTERS)]
    kept_topic, gone_topic = topics.new("kept"), topics.new("gone")
    create_topics(output_kafka.bootstrap, [kept_topic, gone_topic])
    reader = TopicReader(output_kafka.bootstrap, kept_topic)
    kept = [Stream(name, "f144", kept_topic) for name in counters]
    gone = Stream(ioc.pv("DOUBLE"), "f144", gone_topic)
    control.add_and_wait([*kept, gone], timeout=TIMEOUT)
    # The counters have never processed (no valid timestamp) until they run.
    epics_write(ioc.pv(COUNTER_RUN), 1)
    try:
        for name in counters:
            reader.wait_for_count(4, schema="f144", source=name, timeout=TIMEOUT)
        with frozen(output_kafka):
            wait_counter_steps(
                counters[0],
                BACKLOG_UPDATES,
                timeout=TIMEOUT,
                what=f"{BACKLOG_UPDATES} updates of each counter queued while the data broker "
                "is frozen",
            )
            since = control.remove(channel=gone.channel)
            control.wait_for_streams(kept, timeout=TIMEOUT, since_ms=int(since * 1000))
        mark = reader.mark()
        for name in counters:
            reader.wait_for_count(
                5,
                schema="f144",
                source=name,
                since=mark,
                timeout=TIMEOUT,
                what=f"5 updates of {name} after the REMOVE",
            )
    finally:
        finals = stop_counters(ioc, counters)
    try:
        wait_counters_end_stepping_by_one(
            reader, finals, timeout=TIMEOUT, what="every counter's final value"
        )
    finally:
        reader.close()
