import logging
import time

from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.forwarder_config_update_fc00 import deserialise_fc00, serialise_fc00

from forwarder.config.storage import (
    ConfigStorage,
    StoredMessage,
    retrieve_config,
    serialise_config,
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


def test_walks_back_over_junk_and_logs_each_skip(caplog):
    junk = [b"junk", b"\x00\x00\x00\x00f144xxxxxxxx", serialise_fc00(UpdateType.REMOVE, [])]
    reader = FakeReader({0: [serialise_config(SPECS)] + junk})
    with caplog.at_level(logging.WARNING):
        assert set(retrieve_config(reader, "store", 5)) == set(SPECS)
    assert caplog.text.count("Skipped storage message") == 3


def test_walk_back_crosses_batches_and_offsets_start_at_low():
    values = [serialise_config(SPECS[:2])] + [b"junk"] * 45
    reader = FakeReader({0: values}, low=100)
    assert set(retrieve_config(reader, "store", 5)) == set(SPECS[:2])
    assert reader.reads[0] == (0, 126, 146)
    assert reader.reads[-1][1] == 100


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


def test_gives_up_at_the_deadline():
    reader = FakeReader({0: [b"junk"] * 100})
    assert retrieve_config(reader, "store", 0) == []
