"""Forwarder groups: which streams a member runs, its Kafka membership, and its storage duty."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import TopicPartition
from streaming_data_types.forwarder_config_update_fc00 import deserialise_fc00
from streaming_data_types.status_x5f2 import deserialise_x5f2

from forwarder.app import Forwarder
from forwarder.cli import parse_settings
from forwarder.config.streams import StreamPattern, StreamSpec
from forwarder.group.member import GroupMember, member_config
from forwarder.group.names import coordination_topic
from forwarder.group.ownership import OwnedStreams, stream_partition
from forwarder.settings import SettingsError

from .fakes_control import FakeStreams
from .test_app import ADD_A, SPEC, make_parts, settings

PARTITIONS = 64


def specs_in(partition: int, count: int, prefix: str = "PV") -> list[StreamSpec]:
    """``count`` specs that hash to ``partition``."""
    out, i = [], 0
    while len(out) < count:
        spec = StreamSpec(f"{prefix}:{i}", "f144", "data", "CA")
        if stream_partition(spec, PARTITIONS) == partition:
            out.append(spec)
        i += 1
    return out


def test_the_partition_of_a_stream_is_the_same_in_every_process():
    # crc32 of "SIM:A\0f144\0data\0CA", so members on any host and Python agree.
    assert stream_partition(SPEC, PARTITIONS) == 2687582357 % PARTITIONS
    assert stream_partition(StreamSpec("SIM:A", "f144", "data", "CA", periodic=True), 64) == (
        stream_partition(SPEC, 64)
    )


def test_only_streams_of_owned_partitions_run_but_all_are_configured():
    manager = FakeStreams()
    owned = OwnedStreams(manager, PARTITIONS)
    mine, other = specs_in(5, 2), specs_in(6, 2)
    owned.assign([5])
    for spec in mine + other:
        assert owned.add(spec)
    assert sorted(manager.specs(), key=str) == sorted(mine, key=str)
    assert sorted(owned.specs(), key=str) == sorted(mine + other, key=str)
    assert not owned.add(mine[0])  # an identical ADD is a no-op, as without a group


def test_an_assignment_starts_and_a_revocation_stops_the_streams_of_those_partitions():
    manager = FakeStreams()
    owned = OwnedStreams(manager, PARTITIONS)
    a, b = specs_in(1, 3), specs_in(2, 3)
    for spec in a + b:
        owned.add(spec)
    assert manager.specs() == []
    assert owned.assign([1, 2]) == 6
    assert owned.revoke([1]) == 3
    assert sorted(manager.specs(), key=str) == sorted(b, key=str)
    assert owned.owned_partitions() == {2}
    assert len(owned.specs()) == 6


def test_a_wildcard_remove_applies_to_the_configuration_whoever_runs_the_stream():
    manager = FakeStreams()
    owned = OwnedStreams(manager, PARTITIONS)
    mine, other = specs_in(7, 2, "KEEP"), specs_in(8, 2, "DROP")
    owned.assign([7, 8])
    for spec in mine + other:
        owned.add(spec)
    owned.revoke([8])
    removed = owned.remove(StreamPattern(channel="DROP:*"))
    assert sorted(removed, key=str) == sorted(other, key=str)
    owned.assign([8])  # taking the partition back must not bring removed streams back
    assert sorted(manager.specs(), key=str) == sorted(mine, key=str)


def test_a_channel_with_wildcard_characters_is_revoked_by_its_exact_identity():
    manager = FakeStreams()
    owned = OwnedStreams(manager, 1)
    owned.assign([0])
    star, plain = StreamSpec("A*", "f144", "t", "CA"), StreamSpec("AB", "f144", "t", "CA")
    owned.add(star)
    owned.add(plain)
    assert owned.revoke([0]) == 2
    assert manager.specs() == []


# -- settings ------------------------------------------------------------------------------


def test_group_needs_a_storage_topic_and_retrieval():
    with pytest.raises(SettingsError, match="needs --storage-topic"):
        settings("--group", "g")
    with pytest.raises(SettingsError, match="skip-retrieval"):
        settings("--group", "g", "--storage-topic", "b:9092/s", "--skip-retrieval")
    with pytest.raises(SettingsError, match="not a valid group name"):
        settings("--group", "a/b", "--storage-topic", "b:9092/s")
    long_topic = ["--config-topic", "b:9092/" + "c" * 120, "--storage-topic", "b:9092/s"]
    with pytest.raises(SettingsError, match="249"):
        settings("--group", "g" * 150, *long_topic)
    with pytest.raises(SettingsError, match="--workers needs --group"):
        settings("--workers", "2")
    ok = settings("--group", "g", "--storage-topic", "b:9092/s", "--workers", "3")
    assert (ok.group, ok.workers) == ("g", 3)
    assert settings().group is None


def test_group_from_ini_key_and_environment(tmp_path):
    ini = tmp_path / "f.ini"
    ini.write_text("group=from-ini\n")
    base = ["--config-topic", "b:9092/c", "--status-topic", "b:9092/s", "--output-broker", "b:1"]
    base += ["--storage-topic", "b:9092/st"]
    assert parse_settings([*base, "-c", str(ini)], env={}).group == "from-ini"
    assert parse_settings(base, env={"GROUP": "from-env"}).group == "from-env"


def test_the_coordination_topic_is_a_legal_topic_name():
    from forwarder.config.commands import is_legal_topic

    assert is_legal_topic(coordination_topic("forwarder_config", "beamline-1"))


def test_members_use_cooperative_rebalancing_and_the_documented_session_timeout():
    config = member_config({"bootstrap.servers": "b:1"}, "cfg", "g")
    assert config["partition.assignment.strategy"] == "cooperative-sticky"
    assert (config["session.timeout.ms"], config["heartbeat.interval.ms"]) == (6000, 1000)
    assert config["group.id"] == member_config({}, "cfg", "g")["group.id"] != (
        member_config({}, "cfg", "h")["group.id"]
    )


# -- membership ----------------------------------------------------------------------------


class FakeAdmin:
    created: list = []

    def __init__(self, config):
        self.exists = bool(FakeAdmin.created)

    def list_topics(self, topic, timeout):
        class Meta:
            pass

        meta = Meta()
        found = Meta()
        found.error = None
        found.partitions = dict.fromkeys(range(PARTITIONS)) if FakeAdmin.created else {}
        meta.topics = {topic: found}
        return meta

    def create_topics(self, new_topics):
        FakeAdmin.created.extend(t.topic for t in new_topics)

        class Done:
            def result(self, timeout):
                return None

        return {t.topic: Done() for t in new_topics}


class FakeGroupConsumer:
    """Delivers scripted assignment changes from poll, like librdkafka's callbacks."""

    def __init__(self, config):
        self.config = config
        self.script: list[tuple[str, list[int]]] = []
        self.closed = False
        FakeGroupConsumer.last = self

    def subscribe(self, topics, on_assign, on_revoke, on_lost):
        self.topics, self.callbacks = topics, {"assign": on_assign, "revoke": on_revoke}
        self.callbacks["lost"] = on_lost

    def poll(self, timeout):
        if self.script:
            kind, ids = self.script.pop(0)
            self.callbacks[kind](self, [TopicPartition(self.topics[0], p) for p in ids])
        return None

    def memberid(self):
        return "member-1"

    def close(self):
        self.callbacks["revoke"](self, [])
        self.closed = True


def test_a_member_creates_the_coordination_topic_and_applies_assignments():
    from helpers.polling import wait_until

    FakeAdmin.created = []
    manager = FakeStreams()
    owned = OwnedStreams(manager, PARTITIONS)
    spec = specs_in(9, 1)[0]
    owned.add(spec)
    changes = []
    member = GroupMember(
        {"bootstrap.servers": "b:1"},
        "cfg",
        "g",
        owned,
        on_change=lambda: changes.append(1),
        consumer_factory=FakeGroupConsumer,
        admin_factory=FakeAdmin,
    )
    member.start()
    try:
        wait_until(lambda: hasattr(FakeGroupConsumer, "last"), timeout=5, what="the consumer")
        FakeGroupConsumer.last.script += [("assign", [0, 9]), ("lost", [9])]
        wait_until(lambda: len(changes) == 2, timeout=5, what="two assignment changes")
        assert FakeAdmin.created == ["cfg.g.coordination"]
        assert member.writes_storage() and member.member_id == "member-1"
        assert manager.specs() == []  # lost partition 9: its stream stopped
    finally:
        member.close()
    assert FakeGroupConsumer.last.closed


# -- the forwarder as a member -------------------------------------------------------------


class FakeMember:
    group = "g"
    member_id = "m-1"

    def __init__(self):
        self.storage_owner = False
        self.on_change = lambda: None
        self.started = self.closed = False

    def writes_storage(self):
        return self.storage_owner

    def start(self):
        self.started = True

    def close(self):
        self.closed = True


def group_forwarder():
    parts, _journal = make_parts(with_storage=True)
    parts.owned_streams = OwnedStreams(parts.manager, PARTITIONS)
    parts.group_member = FakeMember()
    fwd = Forwarder(settings("--storage-topic", "b:9092/store", "--group", "g"), parts)
    return fwd, parts


def test_only_the_storage_owner_writes_storage_and_a_new_owner_writes_at_once():
    fwd, parts = group_forwarder()
    fwd.step()
    parts.config_consumer.send(ADD_A)
    fwd.step()
    assert parts.storage_sink.values("store") == []  # not the owner: nothing written
    assert [s.channel for s in parts.owned_streams.specs()] == ["SIM:A"]
    parts.group_member.storage_owner = True
    parts.group_member.on_change()
    fwd.step()
    (stored,) = parts.storage_sink.values("store")
    assert [s.channel for s in deserialise_fc00(stored).streams] == ["SIM:A"]


def test_status_lists_the_members_own_streams_with_group_and_member_id():
    fwd, parts = group_forwarder()
    fwd.step()
    parts.config_consumer.send(ADD_A)
    fwd.step()
    last = json.loads(deserialise_x5f2(parts.status_sink.values()[-1]).status_json)
    assert (last["group"], last["member_id"]) == ("g", "m-1")
    assert last["streams"] == []  # configured, not owned
    parts.owned_streams.assign([stream_partition(SPEC, PARTITIONS)])
    parts.group_member.on_change()
    fwd.step()
    last = json.loads(deserialise_x5f2(parts.status_sink.values()[-1]).status_json)
    assert [s["channel_name"] for s in last["streams"]] == ["SIM:A"]


def test_the_member_joins_only_after_restoring_and_leaves_first_on_shutdown():
    fwd, parts = group_forwarder()
    parts.storage_reader = NeverRead()
    fwd.stop.set()
    fwd.run()
    assert not parts.group_member.started  # a stop during restore: never joined
    fwd.stop.clear()
    fwd.parts.storage_reader = None
    threading_stop(fwd)
    fwd.run()
    assert parts.group_member.started
    fwd.shutdown()
    assert parts.group_member.closed


class NeverRead:
    def close(self):
        pass


def threading_stop(fwd):
    import threading

    threading.Timer(0.3, fwd.stop.set).start()
