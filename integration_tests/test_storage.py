"""The storage topic: the configuration survives a restart, unless retrieval is skipped; junk
and empty topics never stop a forwarder from starting."""

from __future__ import annotations

import pytest
from streaming_data_types import serialise_f144
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType

from helpers.flatbuffers_helpers import Fc00, describe
from helpers.forwarder_control import ForwarderControl, fc00, now_ms
from integration_tests.forwarder_fixtures import Stream, epics_write, ini_file

TIMEOUT = 30.0
JUNK = b"definitely not a flatbuffer"


def _streams(ioc, topic):
    return [
        Stream(ioc.pv("DOUBLE"), "f144", topic, "CA"),
        Stream(ioc.pv("LONG"), "f142", topic, "PVA"),
    ]


def _stored_configs(reader) -> list[Fc00]:
    return [r.message for r in reader.records if isinstance(r.message, Fc00)]


def _wait_stored(reader, streams, since_ms=0):
    """Wait until the newest stored configuration (written at or after ``since_ms``) is
    exactly ``streams``."""
    want = {s.key for s in streams}

    def stored():
        configs = [
            r.message
            for r in reader.records
            if isinstance(r.message, Fc00) and r.kafka_timestamp_ms >= since_ms
        ]
        return configs and configs[-1].keys == want

    reader.wait_for(stored, timeout=TIMEOUT, what=f"a stored configuration of {sorted(want)}")


def _start_and_configure(forwarder_factory, control_factory, outputs, storage_topic, streams):
    fwd = forwarder_factory(ini_file("forwarder_storage.ini"), storage_topic=storage_topic)
    ctl = control_factory(fwd)
    ctl.add_and_wait(streams, timeout=TIMEOUT)
    storage = outputs(storage_topic)
    _wait_stored(storage, streams)
    return fwd, storage


def _stays_empty(ctl, statuses=2):
    """Wait for ``statuses`` status messages and check that none lists a stream."""
    ctl.wait_for_status(
        lambda r: len(ctl.statuses) >= statuses,
        timeout=TIMEOUT,
        what=f"{statuses} status messages",
    )
    listed = [sorted(r.streams) for r in ctl.statuses if r.streams]
    assert not listed, f"a forwarder that should start empty lists streams: {listed}"


@pytest.mark.ess
def test_configuration_is_restored_on_restart_and_stored_again(
    ioc, forwarder_factory, control_factory, outputs, topics, storage_topic
):
    topic = topics.new("data")
    streams = _streams(ioc, topic)
    first, storage = _start_and_configure(
        forwarder_factory, control_factory, outputs, storage_topic, streams
    )
    first.stop()
    restart_ms = now_ms()

    second = forwarder_factory(ini_file("forwarder_storage.ini"), storage_topic=storage_topic)
    ctl = control_factory(second)
    ctl.wait_for_streams(streams, timeout=TIMEOUT)
    assert not ctl.sent, "the restored forwarder was sent commands"

    reader = outputs(topic)
    mark = reader.mark()
    epics_write(ioc.pv("DOUBLE"), 5.5)
    epics_write(ioc.pv("LONG"), 55)
    for schema, suffix, value in (("f144", "DOUBLE", 5.5), ("f142", "LONG", 55)):
        name = ioc.pv(suffix)
        reader.wait_for_message(
            lambda m, s=schema, n=name, v=value: (
                m.schema == s and m.source == n and float(m.value) == v
            ),
            since=mark,
            timeout=TIMEOUT,
            what=f"{schema} of {suffix} = {value} from the restored forwarder",
        )
    _wait_stored(storage, streams, since_ms=restart_ms)


@pytest.mark.ess
def test_skip_retrieval_starts_empty_despite_a_stored_configuration(
    ioc, forwarder_factory, control_factory, outputs, topics, storage_topic
):
    streams = _streams(ioc, topics.new("data"))
    first, _ = _start_and_configure(
        forwarder_factory, control_factory, outputs, storage_topic, streams
    )
    first.stop()
    second = forwarder_factory(
        ini_file("forwarder_storage.ini"), storage_topic=storage_topic, skip_retrieval=True
    )
    _stays_empty(control_factory(second))


def _produce(kafka, topic, payloads):
    writer = ForwarderControl(kafka.bootstrap, topic, status_topic="")
    try:
        for payload in payloads:
            writer.send_raw(payload)
    finally:
        writer.close()


@pytest.mark.ess
@pytest.mark.parametrize("layout", ["junk-before-valid", "junk-after-valid", "junk-around-valid"])
def test_junk_on_the_storage_topic_is_skipped_and_the_valid_configuration_restored(
    layout, kafka, ioc, forwarder_factory, control_factory, outputs, topics, storage_topic
):
    topic = topics.new("data")
    streams = _streams(ioc, topic)
    valid = fc00(UpdateType.ADD, streams)
    junk = [JUNK, serialise_f144("x", 1.0, 1), valid[: len(valid) // 2]]
    payloads = {
        "junk-before-valid": junk + [valid],
        "junk-after-valid": [valid] + junk,
        "junk-around-valid": junk + [valid] + junk,
    }[layout]
    _produce(kafka, storage_topic, payloads)
    fwd = forwarder_factory(ini_file("forwarder_storage.ini"), storage_topic=storage_topic)
    control_factory(fwd).wait_for_streams(streams, timeout=TIMEOUT)
    reader = outputs(topic)
    reader.wait_for_count(1, schema="f144", source=ioc.pv("DOUBLE"), timeout=TIMEOUT)


@pytest.mark.ess
@pytest.mark.parametrize("content", ["empty", "junk-only"])
def test_storage_topic_without_a_valid_configuration_starts_empty_and_accepts_commands(
    content, kafka, ioc, forwarder_factory, control_factory, outputs, topics, storage_topic
):
    if content == "junk-only":
        _produce(kafka, storage_topic, [JUNK, b"", b"\x00\x00\x00\x00fc00"])
    fwd = forwarder_factory(ini_file("forwarder_storage.ini"), storage_topic=storage_topic)
    ctl = control_factory(fwd)
    _stays_empty(ctl)
    topic = topics.new("data")
    stream = Stream(ioc.pv("DOUBLE"), "f144", topic)
    [message] = ctl.add_and_wait([stream], outputs(topic), timeout=TIMEOUT)
    assert float(message.value) == 1.5, describe(message)


@pytest.mark.ess
def test_after_removeall_a_restart_restores_nothing(
    ioc, forwarder_factory, control_factory, outputs, topics, storage_topic
):
    """REMOVEALL is a configuration too: storage must hold the empty one, so that a restart
    does not bring back streams that were removed."""
    streams = _streams(ioc, topics.new("data"))
    first, storage = _start_and_configure(
        forwarder_factory, control_factory, outputs, storage_topic, streams
    )
    ctl = control_factory(first)
    since = ctl.remove_all()
    ctl.wait_for_streams([], timeout=TIMEOUT, since_ms=int(since * 1000))
    _wait_stored(storage, [], since_ms=int(since * 1000))
    first.stop()
    second = forwarder_factory(ini_file("forwarder_storage.ini"), storage_topic=storage_topic)
    _stays_empty(control_factory(second))
