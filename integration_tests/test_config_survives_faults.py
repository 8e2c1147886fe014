"""The configuration survives what a facility's Kafka does to it: a forwarder that starts
before its broker, a storage topic full of junk, a configuration of 100,000 streams, and a
config topic that only comes into being with the first command."""

from __future__ import annotations

import re
import signal
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.forwarder_config_update_fc00 import deserialise_fc00

from helpers.forwarder_control import fc00
from helpers.kafka_helpers import refuse_all_messages
from helpers.polling import wait_until
from integration_tests.forwarder_fixtures import Stream, epics_write, ini_file, stop_broker

TIMEOUT = 30.0
BROKER_DOWN_AT_START_S = 30.0  # the scenario: the broker comes back this long after
RESTORE_BOUND_S = 3.0
JUNK_MESSAGES = 10_000
LARGE_CONFIG = 100_000
SNAPSHOT_HEADER = "forwarder-snapshot"  # see README "Reliability": split snapshots
READ_TIMEOUT = 120.0
LARGE_TIMEOUT = 180.0  # for each step with 100,000 streams


def _produce(kafka, topic: str, payloads, headers=None) -> None:
    """Write ``payloads`` to ``topic`` as one producer, in order, acknowledged."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 20})
    for i, payload in enumerate(payloads):
        producer.produce(topic, payload, headers=headers[i] if headers else None)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(TIMEOUT) == 0, f"could not write {len(payloads)} messages to {topic}"



def _log_shows(fwd, pattern: str, timeout: float, what: str) -> None:
    wait_until(
        lambda: re.search(pattern, fwd.log_tail(400)),
        timeout=timeout,
        what=what,
        seen=lambda: fwd.log_tail(10),
    )


def _storage_messages(kafka, topic: str) -> list[tuple[bytes, str | None]]:
    """(value, snapshot marker or None) of every message on the storage topic, in order."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": f"test-storage-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out = []
        deadline = time.monotonic() + READ_TIMEOUT
        while len(out) < high and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                if message.error() is None:
                    marker = dict(message.headers() or ()).get(SNAPSHOT_HEADER)
                    out.append((message.value(), marker.decode() if marker else None))
        assert len(out) >= high, f"read {len(out)} of {high} storage messages"
        return out
    finally:
        consumer.close()


def _keys(value: bytes) -> set[tuple[str, str, str, str]]:
    return {
        (s.channel, _PROTOCOLS[s.protocol], s.topic, s.schema)
        for s in deserialise_fc00(value).streams
    }


def _stored_snapshots(kafka, topic: str) -> list[set[tuple[str, str, str, str]]]:
    """Every complete configuration snapshot on the storage topic, oldest first."""
    snapshots, parts = [], {}
    for value, marker in _storage_messages(kafka, topic):
        if marker is None:
            snapshots.append(_keys(value))
            continue
        snapshot_id, fraction = marker.split(" ")
        index, count = (int(x) for x in fraction.split("/"))
        got = parts.setdefault(snapshot_id, {})
        got[index] = _keys(value)
        if len(got) == count:
            snapshots.append(set().union(*got.values()))
    return snapshots


def _newest_stored_size(kafka, topic: str) -> int:
    """How many streams the newest complete snapshot holds (decoding only its parts)."""
    seen: dict[str, dict[int, bytes]] = {}
    for value, marker in reversed(_storage_messages(kafka, topic)):
        if marker is None:
            return len(_keys(value))
        snapshot_id, fraction = marker.split(" ")
        index, count = (int(x) for x in fraction.split("/"))
        got = seen.setdefault(snapshot_id, {})
        got[index] = value
        if len(got) == count:
            return len(set().union(*(_keys(v) for v in got.values())))
    return 0


_PROTOCOLS = {0: "PVA", 1: "CA", 2: "FAKE"}


@pytest.mark.extension
@pytest.mark.slow
def test_a_forwarder_started_while_the_broker_is_down_restores_and_keeps_the_stored_configuration(
    kafka, ioc, forwarder_factory, control_factory, outputs, topics, storage_topic
):
    data = topics.new("data")
    stored = [
        Stream(ioc.pv("DOUBLE"), "f144", data, "CA"),
        Stream(ioc.pv("LONG"), "f144", data, "PVA"),
    ]
    _produce(kafka, storage_topic, [fc00(UpdateType.ADD, stored)])  # as an earlier run left it
    config, status = topics.new("config"), topics.new("status")

    stop_broker(kafka)
    try:
        fwd = forwarder_factory(
            ini_file("forwarder_storage.ini"),
            storage_topic=storage_topic,
            config_topic=config,
            status_topic=status,
            wait_ready=False,
        )
        # The scenario: a power cut, after which the broker comes back 30 s after the
        # forwarder. The forwarder must still be waiting for it, not running empty.
        deadline = time.monotonic() + BROKER_DOWN_AT_START_S
        while time.monotonic() < deadline:
            assert fwd.is_running(), "the forwarder died while the broker was down"
            time.sleep(0.5)
    finally:
        if not kafka.is_running():
            kafka.start()

    ctl = control_factory(fwd)
    added = Stream(ioc.pv("STRING"), "f144", data, "CA")
    ctl.add([added])  # sent as soon as the broker is back, likely before the restore ends
    ctl.wait_for_streams(stored + [added], timeout=60.0)

    reader = outputs(data)
    mark = reader.mark()
    epics_write(ioc.pv("DOUBLE"), 7.25)
    reader.wait_for_message(
        lambda m: m.schema == "f144" and m.source == ioc.pv("DOUBLE") and float(m.value) == 7.25,
        since=mark,
        timeout=TIMEOUT,
        what="an update of a restored stream",
    )
    want = {s.key for s in stored}
    snapshots = wait_until(
        lambda: (s := _stored_snapshots(kafka, storage_topic)) and len(s) >= 2 and s,
        timeout=TIMEOUT,
        what="the forwarder's own snapshot on the storage topic",
    )
    assert all(want <= s for s in snapshots), (
        f"a snapshot without the stored streams was written: {[sorted(s) for s in snapshots]}"
    )
    assert snapshots[-1] == want | {added.key}


@pytest.mark.extension
def test_a_valid_configuration_behind_ten_thousand_junk_messages_is_restored_within_3_s(
    kafka, ioc, forwarder_factory, control_factory, topics, storage_topic
):
    data = topics.new("data")
    stored = [Stream(ioc.pv("DOUBLE"), "f144", data, "CA")]
    junk = [b"junk %d" % i for i in range(JUNK_MESSAGES)]
    _produce(kafka, storage_topic, [fc00(UpdateType.ADD, stored), *junk])

    fwd = forwarder_factory(ini_file("forwarder_storage.ini"), storage_topic=storage_topic)
    control_factory(fwd).wait_for_streams(stored, timeout=TIMEOUT)
    # The forwarder's own account of the read-back (messages read, seconds it took).
    line = re.search(r"Restoring 1 streams .*?(\d+) messages read in ([\d.]+)s", fwd.log_tail(400))
    assert line, f"no restore line in the forwarder log:\n{fwd.log_tail(20)}"
    assert int(line[1]) >= 1, line[0]
    assert float(line[2]) < RESTORE_BOUND_S, line[0]


@pytest.mark.extension
def test_the_first_command_on_a_config_topic_created_after_start_is_applied(
    ioc, forwarder_factory, control_factory, outputs, topics
):
    config = f"{topics.new('marker')}-config-created-later"  # does not exist yet
    fwd = forwarder_factory(config_topic=config, wait_ready=False)
    _log_shows(
        fwd,
        r"(?i)config topic \S+ does not exist",
        timeout=TIMEOUT,
        what="the forwarder finding that its config topic does not exist yet",
    )
    data = topics.new("data")
    stream = Stream(ioc.pv("DOUBLE"), "f144", data, "CA")
    ctl = control_factory(fwd)
    # The ADD creates the config topic (the broker auto-creates topics).
    ctl.add_and_wait([stream], outputs(data), timeout=TIMEOUT)


@pytest.mark.extension
@pytest.mark.slow
@pytest.mark.xdist_group("machine_load")
def test_a_hundred_thousand_streams_are_stored_and_restored_after_sigkill(
    kafka, forwarder_factory, control_factory, topics, storage_topic
):
    """60-character names: 12 MB of configuration, far past the broker's 1 MB limit."""
    data = topics.new("d")
    streams = [Stream(f"BIG:{i:056d}", "f144", data, "FAKE") for i in range(LARGE_CONFIG)]
    # An earlier run's snapshot, split as the forwarder splits them (README "Reliability").
    chunk = 4000
    parts = [streams[i : i + chunk] for i in range(0, len(streams), chunk)]
    snapshot_id = uuid.uuid4().hex
    _produce(
        kafka,
        storage_topic,
        [fc00(UpdateType.ADD, part) for part in parts],
        headers=[
            [(SNAPSHOT_HEADER, f"{snapshot_id} {i}/{len(parts)}".encode())]
            for i in range(1, len(parts) + 1)
        ],
    )
    slow_fake = ["--fake-pv-period", "3600000"]  # FAKE sources that never tick in the test
    # Restoring and starting 100,000 streams takes seconds: the first status comes after.
    first = forwarder_factory(
        ini_file("forwarder_storage.ini"),
        storage_topic=storage_topic,
        extra_args=slow_fake,
        wait_ready=False,
    )
    ctl = control_factory(first)
    ctl.wait_for_streams(streams, timeout=LARGE_TIMEOUT)
    one_more = Stream("BIG:one-more-stream-added-by-command", "f144", data, "FAKE")
    ctl.add([one_more])
    ctl.wait_for_streams(streams + [one_more], timeout=LARGE_TIMEOUT)
    wait_until(
        lambda: _newest_stored_size(kafka, storage_topic) == LARGE_CONFIG + 1,
        timeout=LARGE_TIMEOUT,
        what=f"the forwarder's own snapshot of {LARGE_CONFIG + 1} streams on the storage topic",
    )

    first.send_signal(signal.SIGKILL)
    first.wait_exit(TIMEOUT)
    second = forwarder_factory(
        ini_file("forwarder_storage.ini"),
        storage_topic=storage_topic,
        extra_args=slow_fake,
        wait_ready=False,
    )
    control_factory(second).wait_for_streams(streams + [one_more], timeout=LARGE_TIMEOUT)


@pytest.mark.extension
def test_a_storage_write_the_broker_refuses_is_an_error_in_the_log_and_in_status(
    kafka, ioc, forwarder_factory, control_factory, topics, storage_topic
):
    refuse_all_messages(kafka.bootstrap, storage_topic)
    fwd = forwarder_factory(ini_file("forwarder_storage.ini"), storage_topic=storage_topic)
    ctl = control_factory(fwd)
    stream = Stream(ioc.pv("DOUBLE"), "f144", topics.new("data"))
    ctl.add_and_wait([stream], timeout=TIMEOUT)  # the command itself still applies

    def storage_flagged(record):
        storage = (record.status.status or {}).get("storage") or {}
        return storage.get("failed", 0) >= 1 and storage.get("error")

    record = ctl.wait_for_status(
        storage_flagged, timeout=TIMEOUT, what="a status flagging the refused storage write"
    )
    assert record.status.status["storage"]["topic"] == storage_topic
    _log_shows(
        fwd,
        rf"ERROR .*{re.escape(storage_topic)}",
        timeout=TIMEOUT,
        what=f"an ERROR line naming the storage topic {storage_topic}",
    )
