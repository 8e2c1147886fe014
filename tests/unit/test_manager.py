"""The stream manager: identity of streams, add/remove, periodic settings, close."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from forwarder.config.streams import StreamPattern, StreamSpec
from forwarder.manager import StreamManager
from forwarder.metrics import Metrics
from forwarder.periodic import TimerScheduler
from forwarder.serialise.base import UnknownSchema
from forwarder.update import ConnectionStatus, Update
from helpers.polling import wait_until
from tests.unit.test_stream import (
    NOW_NS,
    FakeAlarmSerialiser,
    FakeConnectionSerialiser,
    FakeDataSerialiser,
    FakeProducer,
)


class FakeSource:
    def __init__(self, channel, on_update, on_connection) -> None:
        self.channel = channel
        self.on_update = on_update
        self.on_connection = on_connection
        self.started = False
        self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def emit(self, value) -> None:
        """A fresh update stamped now (the manager's streams use the real wall clock)."""
        if not self.stopped:
            self.on_update(Update(self.channel, value, time.time_ns()))


class FakeFactory:
    def __init__(self) -> None:
        self.sources: list[FakeSource] = []
        self.closed = False

    def create(self, channel, on_update, on_connection):
        source = FakeSource(channel, on_update, on_connection)
        self.sources.append(source)
        return source

    def close(self) -> None:
        self.closed = True


def fake_serialiser_factory(schema: str, channel: str):
    if schema not in {"f144", "f142", "al00", "tdct"}:
        raise UnknownSchema(schema)
    return FakeDataSerialiser(channel)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(period_ms=None, timers=None):
    producer = FakeProducer()
    factory = FakeFactory()
    metrics = Metrics()
    manager = StreamManager(
        producer,
        {"CA": factory, "PVA": FakeFactory()},
        service_id="svc",
        pv_update_period_ms=period_ms,
        metrics=metrics,
        data_serialiser_factory=fake_serialiser_factory,
        alarm=FakeAlarmSerialiser(),
        connection=FakeConnectionSerialiser(),
        timers=timers,
        never_connected_grace_s=3600,
    )
    return manager, producer, factory, metrics


def spec(channel="PV:1", schema="f144", topic="t1", protocol="CA", periodic=False):
    return StreamSpec(channel, schema, topic, protocol, periodic)


def test_add_creates_and_starts_a_source_and_counts_it():
    manager, _, factory, metrics = make()
    try:
        assert manager.add(spec())
        assert [s.channel for s in factory.sources] == ["PV:1"]
        assert factory.sources[0].started
        assert metrics.snapshot()["pvs_subscribed"] == 1
        assert manager.specs() == [spec()]
    finally:
        manager.close()


def test_identical_add_does_not_duplicate_output():
    manager, producer, factory, _ = make()
    try:
        assert manager.add(spec())
        assert not manager.add(spec())
        assert len(factory.sources) == 1
        factory.sources[0].emit(np.float64(1.0))
        assert [v for v in producer.values() if v.startswith(b"data")] == [b"data:1.0"]
    finally:
        manager.close()


def test_same_pv_to_other_topic_or_schema_is_an_independent_stream():
    manager, producer, factory, metrics = make()
    try:
        assert manager.add(spec(topic="t1"))
        assert manager.add(spec(topic="t2"))
        assert manager.add(spec(schema="f142"))
        assert len(factory.sources) == 3
        assert metrics.snapshot()["pvs_subscribed"] == 3
        manager.remove(StreamPattern(topic="t2"))
        assert sorted(s.topic for s in manager.specs()) == ["t1", "t1"]
        assert not factory.sources[0].stopped and factory.sources[1].stopped
    finally:
        manager.close()


def test_add_differing_only_in_periodic_updates_the_setting():
    clock = Clock()
    timers = TimerScheduler(clock=clock)
    manager, producer, factory, _ = make(period_ms=1000, timers=timers)
    try:
        assert manager.add(spec(periodic=False))
        assert manager.add(spec(periodic=True))
        assert len(factory.sources) == 1
        assert manager.specs() == [spec(periodic=True)]
        factory.sources[0].emit(np.float64(2.0))
        sent = len(producer.sent)
        clock.now += 1.5
        timers.run_due()
        assert len(producer.sent) == sent + 1 and producer.values()[-1] == b"data:2.0"
    finally:
        manager.close()


def test_unknown_schema_or_protocol_is_refused_with_a_clear_log(caplog):
    manager, _, factory, metrics = make()
    try:
        with caplog.at_level(logging.ERROR):
            assert not manager.add(spec(schema="zz99"))
            assert not manager.add(spec(protocol="XYZ"))
        assert "unknown schema 'zz99'" in caplog.text
        assert "unknown protocol 'XYZ'" in caplog.text
        assert factory.sources == []
        assert metrics.snapshot()["pvs_subscribed"] == 0
    finally:
        manager.close()


def test_source_creation_failure_is_logged_not_raised(caplog):
    manager, _, factory, _ = make()

    def broken(*args):
        raise RuntimeError("no context")

    factory.create = broken
    try:
        assert not manager.add(spec())
        assert "no context" in caplog.text
        assert manager.specs() == []
    finally:
        manager.close()


def test_remove_with_wildcards_returns_removed_specs_and_stops_their_sources():
    manager, _, factory, metrics = make()
    try:
        for name in ("SIM:A", "SIM:B", "OTHER"):
            manager.add(spec(channel=name))
        removed = manager.remove(StreamPattern(channel="SIM:*"))
        assert sorted(s.channel for s in removed) == ["SIM:A", "SIM:B"]
        assert [s.stopped for s in factory.sources] == [True, True, False]
        assert [s.channel for s in manager.specs()] == ["OTHER"]
        assert metrics.snapshot()["pvs_subscribed"] == 1
    finally:
        manager.close()


def test_removing_one_stream_does_not_disturb_others_or_the_producer():
    manager, producer, factory, _ = make()
    try:
        manager.add(spec(channel="A"))
        manager.add(spec(channel="B"))
        manager.remove(StreamPattern(channel="A"))
        factory.sources[0].on_update(
            Update("A", np.float64(1.0), time.time_ns())
        )  # a late callback
        factory.sources[1].emit(np.float64(2.0))
        assert [(k, v) for _, k, v, _ in producer.sent if v.startswith(b"data")] == [
            (b"B", b"data:2.0")
        ]
    finally:
        manager.close()


def test_remove_all_and_close_stop_everything():
    manager, producer, factory, metrics = make()
    manager.add(spec(channel="A"))
    manager.add(spec(channel="B"))
    assert len(manager.remove_all()) == 2
    assert all(s.stopped for s in factory.sources)
    manager.add(spec(channel="C"))
    manager.close()
    assert all(s.stopped for s in factory.sources)
    assert metrics.snapshot()["pvs_subscribed"] == 0
    assert not manager.add(spec(channel="D"))
    factory.sources[2].on_connection(ConnectionStatus.CONNECTED, NOW_NS)
    assert producer.sent == []
    assert not factory.closed  # factories belong to the caller


def test_never_connected_is_reported_by_the_manager_timer_thread():
    producer = FakeProducer()
    manager = StreamManager(
        producer,
        {"CA": FakeFactory()},
        service_id="svc",
        pv_update_period_ms=None,
        metrics=Metrics(),
        data_serialiser_factory=fake_serialiser_factory,
        alarm=FakeAlarmSerialiser(),
        connection=FakeConnectionSerialiser(),
        never_connected_grace_s=0.05,
    )
    try:
        manager.add(spec())
        wait_until(
            lambda: b"ep01:NEVER_CONNECTED:svc" in producer.values(),
            timeout=5,
            what="NEVER_CONNECTED after the grace period",
            seen=producer.values,
        )
    finally:
        manager.close()


def test_concurrent_adds_and_callbacks_are_safe():
    manager, producer, factory, metrics = make()
    errors = []

    def add_many(prefix):
        try:
            for i in range(200):
                manager.add(spec(channel=f"{prefix}:{i}"))
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=add_many, args=(p,)) for p in "ABC"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert metrics.snapshot()["pvs_subscribed"] == 600
        assert len(factory.sources) == 600
    finally:
        manager.close()


def test_ten_thousand_streams_in_one_add():
    manager, _, factory, metrics = make()
    try:
        for i in range(10_000):
            manager.add(spec(channel=f"PV:{i}"))
        assert metrics.snapshot()["pvs_subscribed"] == 10_000
        assert len(manager.remove(StreamPattern(channel="PV:*"))) == 10_000
    finally:
        manager.close()


def test_real_serialisers_and_fake_source_end_to_end():
    """The whole data plane bar Kafka: FAKE source -> stream -> real FlatBuffers."""
    from streaming_data_types import deserialise_al00, deserialise_ep01, deserialise_f144

    from forwarder.sources.fake import FakeSourceFactory

    producer = FakeProducer()
    factory = FakeSourceFactory(20)
    manager = StreamManager(
        producer,
        {"FAKE": factory},
        service_id="svc",
        pv_update_period_ms=None,
        metrics=Metrics(),
    )
    try:
        assert manager.add(spec(channel="SIM:X", protocol="FAKE"))

        def schema_ids():
            return [v[4:8] for v in producer.values()]

        wait_until(
            lambda: schema_ids()[:4] == [b"ep01", b"f144", b"al00", b"f144"],
            timeout=10,
            what="ep01, f144, al00, f144 from a FAKE PV",
            seen=schema_ids,
        )
        topic, key, first, ts_ms = producer.sent[1]
        assert (topic, key) == ("t1", b"SIM:X")
        data = deserialise_f144(first)
        assert data.source_name == "SIM:X" and ts_ms == data.timestamp_unix_ns // 10**6
        assert deserialise_ep01(producer.sent[0][2]).source_name == "SIM:X"
        assert deserialise_al00(producer.sent[2][2]).source == "SIM:X"
    finally:
        manager.close()
        factory.close()
