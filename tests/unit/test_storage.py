import logging
import time

import pytest
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.forwarder_config_update_fc00 import deserialise_fc00, serialise_fc00

from forwarder.config.storage import (
    FIRST_WINDOW,
    MAX_SNAPSHOT_MESSAGE_BYTES,
    ConfigStorage,
    StorageUnavailable,
    StoredMessage,
    retrieve_config,
    retrieve_snapshot,
    serialise_config,
    snapshot_marker,
    snapshot_messages,
)
from forwarder.config.streams import StreamSpec

from .fakes_control import FakeSink

SPECS = [
    StreamSpec("SIM:A", "f144", "data", "CA", False),
    StreamSpec("SIM:B", "nttable_se00", "tables", "PVA", True),
    StreamSpec("FAKE:C", "f142", "data", "FAKE", False),
]


class FakeReader:
    """A topic as partition -> list of values (index = offset - low)."""

    def __init__(self, partitions=None, low=0):
        self.data = partitions
        self.low = low
        self.reads = []

    def partitions(self, timeout):
        if self.data is None:
            return None
        return {p: (self.low, self.low + len(v)) for p, v in self.data.items()}

    def read(self, partition, start, end, deadline):
        self.reads.append((partition, start, end))
        values = self.data[partition]
        return [StoredMessage(o, values[o - self.low], 1000 + o) for o in range(start, end)]


def test_serialise_config_round_trips_through_fc00():
    update = deserialise_fc00(serialise_config(SPECS))
    assert update.config_change == UpdateType.ADD
    assert {(s.channel, s.schema, s.topic, s.periodic) for s in update.streams} == {
        ("SIM:A", "f144", "data", 0),
        ("SIM:B", "nttable_se00", "tables", 1),
        ("FAKE:C", "f142", "data", 0),
    }


def test_empty_config_is_stored_as_removeall():
    assert deserialise_fc00(serialise_config([])).config_change == UpdateType.REMOVEALL


def test_storage_listener_produces_to_the_topic():
    sink = FakeSink()
    ConfigStorage(sink, "store")(SPECS)
    ((topic, key, value, ts),) = sink.messages
    assert topic == "store" and key is None and abs(ts / 1000 - time.time()) < 60
    assert len(deserialise_fc00(value).streams) == 3


def test_newest_valid_message_wins():
    reader = FakeReader({0: [serialise_config(SPECS[:1]), serialise_config(SPECS)]})
    assert set(retrieve_config(reader, "store", 5)) == set(SPECS)


def test_a_restored_snapshot_carries_its_kafka_timestamp():
    reader = FakeReader({0: [serialise_config(SPECS[:1]), serialise_config(SPECS), b"junk"]})
    stored = retrieve_snapshot(reader, "store", 5)
    assert set(stored.specs) == set(SPECS)
    assert stored.timestamp_ms == 1001  # the fake broker stamps offset o with 1000 + o
    assert retrieve_snapshot(FakeReader({0: [b"junk"]}), "store", 5).timestamp_ms is None


def test_junk_after_the_newest_snapshot_is_skipped_and_summarised_in_one_line(caplog):
    junk = [b"junk", b"\x00\x00\x00\x00f144xxxxxxxx", serialise_fc00(UpdateType.REMOVE, [])]
    reader = FakeReader({0: [serialise_config(SPECS)] + junk})
    with caplog.at_level(logging.WARNING):
        assert set(retrieve_config(reader, "store", 5)) == set(SPECS)
    assert "Skipped 3 message(s) on storage topic store" in caplog.text
    assert len(caplog.records) == 1


def test_read_back_grows_its_window_from_the_end_and_offsets_start_at_low():
    values = [serialise_config(SPECS[:2])] + [b"junk"] * (FIRST_WINDOW + 5)
    reader = FakeReader({0: values}, low=100)
    assert set(retrieve_config(reader, "store", 5)) == set(SPECS[:2])
    high = 100 + len(values)
    assert reader.reads == [(0, high - FIRST_WINDOW, high), (0, 100, high - FIRST_WINDOW)]


def test_ten_thousand_junk_messages_are_read_in_few_passes():
    values = [serialise_config(SPECS)] + [b"junk"] * 10_000
    reader = FakeReader({0: values})
    assert set(retrieve_config(reader, "store", 5)) == set(SPECS)
    assert len(reader.reads) <= 3
    assert sum(end - start for _p, start, end in reader.reads) == len(values)  # each read once


def test_parts_of_a_split_snapshot_may_lie_across_read_windows():
    parts = snapshot_messages(_many(2000), max_bytes=32 * 1024)
    junk = [(b"junk", None)] * (FIRST_WINDOW - 1)
    stored = _as_stored([*parts[:-1], *junk, parts[-1]])
    restored = retrieve_config(HeaderReader(stored), "store", 5)
    assert len(restored) == 2000


def test_stored_removeall_means_empty():
    reader = FakeReader({0: [serialise_config(SPECS), serialise_config([])]})
    assert retrieve_config(reader, "store", 5) == []


def test_missing_empty_or_junk_only_topic_starts_empty(caplog):
    with caplog.at_level(logging.INFO):
        assert retrieve_config(FakeReader(None), "store", 5) == []
        assert "does not exist" in caplog.text
        assert retrieve_config(FakeReader({0: []}), "store", 5) == []
        assert retrieve_config(FakeReader({0: [b"x", None]}), "store", 5) == []
    assert caplog.text.count("No valid configuration on storage topic store") == 2


def test_newest_across_partitions_by_timestamp():
    # FakeReader timestamps grow with the offset, so partition 1's offset 2 is the newest.
    reader = FakeReader({0: [serialise_config(SPECS[:1])], 1: [b"", b"", serialise_config(SPECS)]})
    assert set(retrieve_config(reader, "store", 5)) == set(SPECS)


def test_an_unreachable_broker_or_an_unfinished_read_is_not_an_empty_topic():
    class Unreachable(FakeReader):
        def partitions(self, timeout):
            raise StorageUnavailable("broker down")

    class Slow(FakeReader):
        def read(self, partition, start, end, deadline):
            raise StorageUnavailable("timed out")

    with pytest.raises(StorageUnavailable):
        retrieve_config(Unreachable({0: []}), "store", 5)
    with pytest.raises(StorageUnavailable):
        retrieve_config(Slow({0: [serialise_config(SPECS)]}), "store", 5)


# -- snapshots too large for one message -------------------------------------------------------


def _many(n: int) -> list[StreamSpec]:
    return [StreamSpec(f"SIM:{i:055d}", "f144", "data-topic", "CA", i % 2 == 0) for i in range(n)]


def _as_stored(messages, first_offset=0):
    return [
        StoredMessage(first_offset + i, value, 1000 + i, tuple(headers or ()))
        for i, (value, headers) in enumerate(messages)
    ]


class HeaderReader(FakeReader):
    """A topic of StoredMessages (with headers) on partition 0."""

    def __init__(self, stored):
        super().__init__({0: stored})

    def read(self, partition, start, end, deadline):
        self.reads.append((partition, start, end))
        return [m for m in self.data[partition] if start <= m.offset < end]


def test_a_snapshot_that_fits_is_one_plain_fc00_add():
    ((value, headers),) = snapshot_messages(SPECS)
    assert headers is None
    assert value == serialise_config(SPECS)


def test_a_large_snapshot_is_split_into_marked_parts_under_the_limit():
    specs = _many(5000)
    messages = snapshot_messages(specs, max_bytes=64 * 1024)
    assert len(messages) > 1
    markers = [snapshot_marker(headers) for _value, headers in messages]
    assert {m[0] for m in markers} == {markers[0][0]}
    assert [(m[1], m[2]) for m in markers] == [(i, len(messages)) for i in range(1, len(messages) + 1)]
    assert all(len(value) <= 64 * 1024 for value, _headers in messages)
    restored = retrieve_config(HeaderReader(_as_stored(messages)), "store", 5)
    assert len(restored) == len(specs) and set(restored) == set(specs)


def test_an_incomplete_split_snapshot_is_skipped_for_the_newest_complete_one():
    older = snapshot_messages(SPECS)
    cut_short = snapshot_messages(_many(3000), max_bytes=32 * 1024)[:-1]
    reader = HeaderReader(_as_stored(older + cut_short))
    assert set(retrieve_config(reader, "store", 5)) == set(SPECS)


def test_parts_of_a_split_snapshot_may_have_junk_between_them():
    parts = snapshot_messages(_many(2000), max_bytes=32 * 1024)
    with_junk = [parts[0], (b"junk", None), *parts[1:], (b"more junk", None)]
    restored = retrieve_config(HeaderReader(_as_stored(with_junk)), "store", 5)
    assert len(restored) == 2000 and set(restored) == set(_many(2000))


def test_storage_writes_every_part_with_its_marker():
    sink = FakeSink()
    ConfigStorage(sink, "store")(_many(20_000))
    assert len(sink.messages) > 1
    assert all(len(m[2]) <= MAX_SNAPSHOT_MESSAGE_BYTES for m in sink.messages)


def test_storage_writes_are_counted_so_a_refused_write_shows_in_its_state():
    sink = FakeSink()
    storage = ConfigStorage(sink, "store")
    storage(SPECS)
    counts = storage.counts
    counts.forwarded += 1  # what the producer does on an acknowledgement …
    counts.dropped += 1  # … and on a refusal
    counts.error = "Broker: Message size too large"
    assert storage.state() == {
        "topic": "store",
        "written": 1,
        "failed": 1,
        "error": "Broker: Message size too large",
    }
