"""Per-stream rules: keys, timestamps, filtering, alarms, connection, periodic re-sends."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from forwarder.config.streams import StreamSpec
from forwarder.metrics import Metrics
from forwarder.periodic import TimerScheduler
from forwarder.serialise.base import UnsupportedValue
from forwarder.stream import Stream, reject_reason
from forwarder.update import Alarm, ConnectionStatus, Severity, Update

NOW_NS = 1_700_000_000_000_000_000  # the fake wall clock's start
SECOND_NS = 1_000_000_000


class FakeClock:
    """Wall clock (ns) and monotonic clock (s) moved together by the test."""

    def __init__(self) -> None:
        self.wall_ns = NOW_NS
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall_ns += int(seconds * SECOND_NS)
        self.mono += seconds


class FakeProducer:
    """Records what would go to Kafka."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int]] = []
        self.streams: list[object] = []  # the StreamCounts each message was credited to
        self._lock = threading.Lock()

    def produce(self, topic, key, value, timestamp_ms, stream=None):
        with self._lock:
            self.sent.append((topic, key, value, timestamp_ms))
            self.streams.append(stream)

    def values(self) -> list[bytes]:
        with self._lock:
            return [v for _, _, v, _ in self.sent]


class FakeDataSerialiser:
    """b"data:<value>"; None for the value "skip"; strings other than that are unsupported."""

    def __init__(self, channel: str = "PV:1") -> None:
        self.channel = channel

    def serialise(self, update: Update) -> bytes | None:
        if isinstance(update.value, str):
            if update.value == "skip":
                return None
            raise UnsupportedValue(f"string value {update.value!r}")
        return b"data:" + str(update.value).encode()


class FakeAlarmSerialiser:
    def serialise(self, channel, timestamp_ns, alarm):
        return f"al00:{alarm.severity.name}:{alarm.message}".encode()


class FakeConnectionSerialiser:
    def serialise(self, channel, timestamp_ns, status, service_id):
        return f"ep01:{status.value}:{service_id}".encode()


def make_stream(schema="f144", periodic=False, period_s=None, grace_s=2.0, topic="t1"):
    clock = FakeClock()
    producer = FakeProducer()
    metrics = Metrics()
    timers = TimerScheduler(clock=lambda: clock.mono)
    spec = StreamSpec("PV:1", schema, topic, "CA", periodic)
    stream = Stream(
        spec,
        FakeDataSerialiser(),
        FakeAlarmSerialiser(),
        FakeConnectionSerialiser(),
        producer,
        metrics,
        timers,
        service_id="svc",
        period_s=period_s,
        never_connected_grace_s=grace_s,
        wall_clock_ns=lambda: clock.wall_ns,
    )
    stream.start()
    return stream, producer, metrics, timers, clock


def upd(value, ts_ns=NOW_NS, alarm=None):
    return Update("PV:1", value, ts_ns, alarm or Alarm())


def test_messages_go_to_topic_keyed_by_pv_with_data_timestamp_in_ms():
    stream, producer, *_ = make_stream(topic="motion")
    stream.on_update(upd(np.float64(1.5), NOW_NS + 123_456_789))
    assert producer.sent[0] == ("motion", b"PV:1", b"data:1.5", (NOW_NS + 123_456_789) // 10**6)
    assert all(topic == "motion" and key == b"PV:1" for topic, key, _, _ in producer.sent)


def test_data_message_first_then_al00_on_first_update():
    stream, producer, *_ = make_stream()
    stream.on_update(upd(np.float64(1.0)))
    assert producer.values() == [b"data:1.0", b"al00:NO_ALARM:"]


def test_al00_only_when_severity_or_message_changes():
    stream, producer, *_ = make_stream()
    minor = Alarm(Severity.MINOR, "HIGH", "HIGH")
    stream.on_update(upd(np.float64(1.0), NOW_NS))
    stream.on_update(upd(np.float64(2.0), NOW_NS + 1))  # same alarm: no al00
    stream.on_update(upd(np.float64(3.0), NOW_NS + 2, minor))
    stream.on_update(upd(np.float64(4.0), NOW_NS + 3, minor))
    stream.on_update(upd(np.float64(5.0), NOW_NS + 4, Alarm(Severity.MINOR, "HIGH", "other")))
    assert producer.values() == [
        b"data:1.0",
        b"al00:NO_ALARM:",
        b"data:2.0",
        b"data:3.0",
        b"al00:MINOR:HIGH",
        b"data:4.0",
        b"data:5.0",
        b"al00:MINOR:other",
    ]


@pytest.mark.parametrize("schema", ["f142", "al00"])
def test_no_separate_al00_for_f142_and_al00(schema):
    stream, producer, *_ = make_stream(schema=schema)
    stream.on_update(upd(np.float64(1.0), alarm=Alarm(Severity.MAJOR, "HIHI", "HIHI")))
    assert producer.values() == [b"data:1.0"]


def test_empty_updates_are_neither_sent_nor_cached():
    stream, producer, metrics, timers, clock = make_stream(periodic=True, period_s=1.0)
    stream.on_update(upd(np.array([], dtype=np.float64)))
    clock.advance(5)
    timers.run_due()
    assert producer.sent == []
    assert metrics.snapshot()["updates_rejected"] == 0


def test_empty_update_does_not_advance_the_timestamp_filter():
    stream, producer, *_ = make_stream()
    stream.on_update(upd(np.array([], dtype=np.float64), NOW_NS + 5))
    stream.on_update(upd(np.float64(1.0), NOW_NS + 1))
    assert producer.values()[0] == b"data:1.0"


def test_serialiser_returning_none_sends_only_the_alarm():
    stream, producer, *_ = make_stream(schema="no_op")
    stream.on_update(upd("skip"))
    assert producer.values() == [b"al00:NO_ALARM:"]


@pytest.mark.parametrize(
    ("offset_ns", "reason"),
    [
        (-366 * 24 * 3600 * SECOND_NS, "year"),
        (11 * 60 * SECOND_NS, "future"),
    ],
)
def test_timestamp_filter_rejects_old_and_future_updates(offset_ns, reason, caplog):
    stream, producer, metrics, *_ = make_stream()
    with caplog.at_level(logging.DEBUG, logger="forwarder.stream"):
        stream.on_update(upd(np.float64(1.0), NOW_NS + offset_ns))
    assert producer.sent == []
    assert metrics.snapshot()["updates_rejected"] == 1
    assert reason in caplog.text


def test_timestamp_filter_accepts_recent_past_and_near_future():
    assert reject_reason(NOW_NS - 300 * 24 * 3600 * SECOND_NS, None, NOW_NS) is None
    assert reject_reason(NOW_NS + 9 * 60 * SECOND_NS, None, NOW_NS) is None


def test_timestamp_filter_rejects_updates_not_newer_than_the_last_accepted():
    stream, producer, metrics, *_ = make_stream()
    stream.on_update(upd(np.float64(1.0), NOW_NS))
    stream.on_update(upd(np.float64(2.0), NOW_NS - 1))  # older
    stream.on_update(upd(np.float64(3.0), NOW_NS))  # same timestamp: a repeat
    stream.on_update(upd(np.float64(4.0), NOW_NS + 1))
    assert [v for v in producer.values() if v.startswith(b"data")] == [b"data:1.0", b"data:4.0"]
    assert metrics.snapshot()["updates_rejected"] == 2


def test_unsupported_value_logs_once_and_counts_each_time(caplog):
    stream, producer, metrics, *_ = make_stream()
    with caplog.at_level(logging.ERROR):
        for i in range(3):
            stream.on_update(upd("text", NOW_NS + i))
    errors = [r for r in caplog.records if "PV:1" in r.getMessage()]
    assert len(errors) == 1 and "f144" in errors[0].getMessage()
    assert metrics.snapshot()["processing_errors"] == 3
    assert not any(v.startswith(b"data") for v in producer.values())


class UnsupportedSerialiser:
    """An alarm or connection serialiser whose schema cannot carry anything."""

    def serialise(self, *args):
        raise UnsupportedValue("cannot carry this")


@pytest.mark.parametrize("which", ["_alarm_serialiser", "_connection_serialiser"])
def test_unsupported_alarm_or_connection_logs_once_counts_and_data_goes_on(which, caplog):
    """Like data: an unsendable alarm or status must not count as a callback error nor stop
    the values."""
    stream, producer, metrics, *_ = make_stream()
    setattr(stream, which, UnsupportedSerialiser())
    minor = Alarm(Severity.MINOR, "HIGH", "HIGH")
    with caplog.at_level(logging.ERROR):
        stream.on_connection(ConnectionStatus.CONNECTED, NOW_NS)
        stream.on_update(upd(np.float64(1.0), NOW_NS + 1))
        stream.on_update(upd(np.float64(2.0), NOW_NS + 2, minor))
        stream.on_connection(ConnectionStatus.DISCONNECTED, NOW_NS + 3)
    errors = [r for r in caplog.records if "cannot carry this" in r.getMessage()]
    assert len(errors) == 1 and "PV:1" in errors[0].getMessage()
    snapshot = metrics.snapshot()
    assert snapshot["processing_errors"] == 2 and snapshot.get("callback_errors", 0) == 0
    assert [v for v in producer.values() if v.startswith(b"data")] == [b"data:1.0", b"data:2.0"]
    if which == "_alarm_serialiser":
        assert b"ep01:DISCONNECTED:svc" in producer.values()
    else:
        assert b"al00:MINOR:HIGH" in producer.values()


def test_exceptions_in_callbacks_are_counted_not_raised(caplog):
    stream, producer, metrics, *_ = make_stream()

    def boom(*args, **kwargs):
        raise RuntimeError("broken producer")

    producer.produce = boom
    stream.on_update(upd(np.float64(1.0)))
    stream.on_connection(ConnectionStatus.CONNECTED, NOW_NS)
    assert metrics.snapshot()["callback_errors"] == 2
    assert "broken producer" in caplog.text


def test_connection_sends_ep01_with_its_own_timestamp_never_filtered():
    stream, producer, metrics, *_ = make_stream()
    stream.on_update(upd(np.float64(1.0), NOW_NS))
    old_ts = NOW_NS - 400 * 24 * 3600 * SECOND_NS  # older than the filter would allow
    stream.on_connection(ConnectionStatus.DISCONNECTED, old_ts)
    assert producer.sent[-1] == ("t1", b"PV:1", b"ep01:DISCONNECTED:svc", old_ts // 10**6)
    assert metrics.snapshot()["updates_rejected"] == 0


def test_state_reports_connection_last_update_and_the_producers_counts_for_this_stream():
    stream, producer, *_ = make_stream()
    assert stream.state() == {
        "connection": "UNKNOWN",
        "last_update_ms": None,
        "forwarded": 0,
        "dropped": 0,
        "error": None,
    }
    stream.on_connection(ConnectionStatus.CONNECTED, NOW_NS)
    stream.on_update(upd(np.float64(1.0), NOW_NS - SECOND_NS))
    assert all(s is stream.counts for s in producer.streams) and len(producer.streams) == 3
    stream.counts.forwarded, stream.counts.dropped, stream.counts.error = 2, 1, "too large"
    assert stream.state() == {
        "connection": "CONNECTED",
        "last_update_ms": (NOW_NS - SECOND_NS) // 1_000_000,
        "forwarded": 2,
        "dropped": 1,
        "error": "too large",
    }
    stream.on_connection(ConnectionStatus.DISCONNECTED, NOW_NS)
    assert stream.state()["connection"] == "DISCONNECTED"


def test_connect_then_value_order():
    stream, producer, *_ = make_stream()
    stream.on_connection(ConnectionStatus.CONNECTED, NOW_NS)
    stream.on_update(upd(np.float64(1.0), NOW_NS - SECOND_NS))
    assert producer.values() == [b"ep01:CONNECTED:svc", b"data:1.0", b"al00:NO_ALARM:"]


def test_value_with_unchanged_timestamp_is_forwarded_after_reconnect():
    stream, producer, *_ = make_stream()
    stream.on_connection(ConnectionStatus.CONNECTED, NOW_NS)
    stream.on_update(upd(np.float64(1.0), NOW_NS - SECOND_NS))
    stream.on_connection(ConnectionStatus.DISCONNECTED, NOW_NS + 1)
    stream.on_connection(ConnectionStatus.CONNECTED, NOW_NS + 2)
    stream.on_update(upd(np.float64(1.0), NOW_NS - SECOND_NS))
    assert producer.values()[-2:] == [b"ep01:CONNECTED:svc", b"data:1.0"]


def test_never_connected_sent_once_after_grace_period():
    stream, producer, _, timers, clock = make_stream(grace_s=2.0)
    clock.advance(1.9)
    timers.run_due()
    assert producer.sent == []
    clock.advance(0.2)
    timers.run_due()
    clock.advance(10)
    timers.run_due()
    expected_ms = clock.wall_ns // 10**6 - 10_000  # sent when the grace period ran out
    assert producer.sent == [("t1", b"PV:1", b"ep01:NEVER_CONNECTED:svc", expected_ms)]


def test_no_never_connected_once_values_arrive():
    stream, producer, _, timers, clock = make_stream(grace_s=2.0)
    stream.on_update(upd(np.float64(1.0)))
    clock.advance(3)
    timers.run_due()
    assert b"ep01:NEVER_CONNECTED:svc" not in producer.values()


def test_no_never_connected_when_connected_in_time():
    stream, producer, _, timers, clock = make_stream(grace_s=2.0)
    stream.on_connection(ConnectionStatus.CONNECTED, NOW_NS)
    clock.advance(3)
    timers.run_due()
    assert producer.values() == [b"ep01:CONNECTED:svc"]


def test_periodic_resend_after_quiet_period_is_byte_identical_with_wall_clock_timestamp():
    stream, producer, _, timers, clock = make_stream(periodic=True, period_s=1.0)
    stream.on_connection(ConnectionStatus.CONNECTED, NOW_NS)
    stream.on_update(upd(np.float64(7.0), NOW_NS - 5 * SECOND_NS))
    first = producer.sent[1]
    clock.advance(0.5)
    stream.on_update(upd(np.float64(8.0), NOW_NS - 4 * SECOND_NS))  # resets the quiet period
    clock.advance(0.9)
    timers.run_due()
    assert len(producer.sent) == 4  # ep01, data 7, al00, data 8: nothing re-sent yet
    clock.advance(0.2)
    timers.run_due()
    assert producer.sent[-1] == ("t1", b"PV:1", b"data:8.0", clock.wall_ns // 10**6)
    assert first[2] == b"data:7.0"
    clock.advance(1.0)
    timers.run_due()
    assert producer.sent[-1] == ("t1", b"PV:1", b"data:8.0", clock.wall_ns // 10**6)
    assert len(producer.sent) == 6


def test_no_periodic_resend_before_first_update_or_when_not_periodic():
    stream, producer, _, timers, clock = make_stream(periodic=True, period_s=1.0)
    stream.on_connection(ConnectionStatus.CONNECTED, NOW_NS)
    clock.advance(5)
    timers.run_due()
    assert producer.values() == [b"ep01:CONNECTED:svc"]

    stream2, producer2, _, timers2, clock2 = make_stream(periodic=False, period_s=1.0)
    stream2.on_connection(ConnectionStatus.CONNECTED, NOW_NS)
    stream2.on_update(upd(np.float64(1.0)))
    clock2.advance(5)
    timers2.run_due()
    assert len(producer2.sent) == 3


def test_no_resend_and_nothing_else_after_close():
    stream, producer, _, timers, clock = make_stream(periodic=True, period_s=1.0)
    stream.on_update(upd(np.float64(1.0)))
    stream.close()
    sent = len(producer.sent)
    clock.advance(5)
    timers.run_due()
    stream.on_update(upd(np.float64(2.0), NOW_NS + 1))
    stream.on_connection(ConnectionStatus.DISCONNECTED, NOW_NS + 2)
    assert len(producer.sent) == sent
    assert timers.pending() == 0


def test_set_periodic_turns_resends_on_and_off():
    stream, producer, _, timers, clock = make_stream(periodic=False, period_s=1.0)
    stream.on_update(upd(np.float64(1.0)))
    stream.set_periodic(True)
    assert stream.spec.periodic
    clock.advance(1.1)
    timers.run_due()
    assert producer.values()[-1] == b"data:1.0" and len(producer.sent) == 3
    stream.set_periodic(False)
    clock.advance(5)
    timers.run_due()
    assert len(producer.sent) == 3
