"""The shared producer: hand-off without waiting, the bounded buffer, per-stream counts, close."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from forwarder.kafka.buffer_budget import PER_MESSAGE_OVERHEAD
from forwarder.kafka.producer import PERFORMANCE_DEFAULTS, Producer
from forwarder.kafka.stream_counts import StreamCounts
from forwarder.metrics import Metrics
from helpers.polling import wait_until

VALUE_LEN = 44


def cost(key: bytes | None = None) -> int:
    """What one message of ``value(n)`` costs of the budget."""
    return VALUE_LEN + len(key or b"") + PER_MESSAGE_OVERHEAD


def value(n: int) -> bytes:
    return str(n).encode().rjust(VALUE_LEN, b"0")


class FakeMessage:
    def __init__(self, topic: str, value: bytes, key: bytes | None, timestamp: int = 0) -> None:
        self._topic, self._value, self._key, self._timestamp = topic, value, key, timestamp

    def timestamp(self) -> tuple[int, int]:
        return 1, self._timestamp  # TIMESTAMP_CREATE_TIME

    def headers(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value

    def __len__(self) -> int:  # confluent_kafka.Message: the value's length, without a copy
        return len(self._value or b"")

    def key(self) -> bytes | None:
        return self._key

    def latency(self) -> float:
        return 0.25


class FakeConfluent:
    """Stands in for confluent_kafka.Producer: a bounded queue drained by poll/flush."""

    def __init__(self, capacity: int = 100_000, fail_delivery: bool = False) -> None:
        self.capacity = capacity
        self.fail_delivery = fail_delivery
        self.produced: list[tuple] = []
        self.delivered: list[tuple] = []
        self.queue: list[tuple] = []
        self.drain = threading.Event()  # poll only frees the queue while this is set
        self.drain.set()
        self.lock = threading.Lock()
        self.flushed = False
        self.reachable = True  # does list_topics (a metadata request) get an answer?
        self.purged: list[tuple] = []
        self.on_purge = lambda: None
        self.unpurgeable = 0  # the oldest messages purge leaves (in flight, never reported)

    def produce(self, topic, value, key, timestamp, on_delivery):
        with self.lock:
            if len(self.queue) >= self.capacity:
                raise BufferError("Local: Queue full")
            self.produced.append((topic, key, value, timestamp))
            self.queue.append((topic, key, value, on_delivery, timestamp))

    def __len__(self) -> int:
        with self.lock:
            return len(self.queue) + len(self.purged)

    def list_topics(self, timeout):
        if not self.reachable:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata"))
        return object()

    def purge(self, in_queue=True, in_flight=True, blocking=True):
        with self.lock:
            kept = self.queue[: self.unpurgeable]
            self.purged.extend(self.queue[self.unpurgeable :])
            self.queue = kept
        self.on_purge()

    def poll(self, timeout):
        with self.lock:
            purged, self.purged = self.purged, []
        for topic, key, value, callback, timestamp in purged:
            err = KafkaError(KafkaError._PURGE_QUEUE)
            callback(err, FakeMessage(topic, value, key, timestamp))
        if not self.drain.is_set():
            self.drain.wait(timeout)
            return 0
        with self.lock:
            queue, self.queue = self.queue, []
        for topic, key, value, callback, timestamp in queue:
            err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if self.fail_delivery else None
            if err is None:
                self.delivered.append((topic, key, value))
            callback(err, FakeMessage(topic, value, key, timestamp))
        if not queue:
            time.sleep(min(timeout, 0.01))
        return len(queue)

    def flush(self, timeout):
        self.flushed = True
        deadline = time.monotonic() + timeout
        while True:
            self.poll(0)
            with self.lock:
                if not self.queue or time.monotonic() >= deadline:
                    return len(self.queue)
            time.sleep(0.01)


def make(
    buffer_bytes: int = 10**9, inflight_bytes: int | None = None, clock=time.monotonic, **kwargs
):
    fake = FakeConfluent(**kwargs)
    metrics = Metrics()
    producer = Producer(
        {},
        metrics,
        confluent_producer=fake,
        buffer_bytes=buffer_bytes,
        inflight_bytes=inflight_bytes,
        clock=clock,
    )
    return producer, fake, metrics


def delivered_values(fake: FakeConfluent, key: bytes) -> list[int]:
    return [int(v) for _, k, v in fake.delivered if k == key]


def test_produce_passes_topic_key_value_timestamp_and_counts_delivery_per_stream():
    producer, fake, metrics = make()
    stream = StreamCounts("PV:1", "topic")
    try:
        producer.produce("topic", b"PV:1", b"payload", 1234, stream=stream)
        assert fake.produced == [("topic", b"PV:1", b"payload", 1234)]
        wait_until(
            lambda: stream.forwarded == 1 and metrics.snapshot()["successful_sends"] == 1,
            timeout=5,
            what="the poll thread to credit the stream and the metrics with the delivery",
        )
        snapshot = metrics.snapshot()
        assert snapshot["successful_sends"] == 1
        assert snapshot["latency_produce_to_delivery"] == {"count": 1, "sum": 0.25}
        assert stream.dropped == 0 and stream.error is None
    finally:
        producer.close(1)


def test_hand_off_never_waits_while_kafka_takes_nothing():
    # librdkafka's queue (3) fills before our in-flight cap (5): every path is exercised.
    producer, fake, metrics = make(capacity=3, inflight_bytes=5 * cost(b"PV:1"))
    fake.drain.clear()  # the broker is gone: no delivery report ever frees room
    stream = StreamCounts("PV:1", "t")
    try:
        slowest = 0.0
        for n in range(5000):
            started = time.perf_counter()
            producer.produce("t", b"PV:1", value(n), n, stream=stream)
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 0.05, f"a hand-off took {slowest:.3f}s"
        assert len(fake.produced) == 3  # librdkafka is full; the rest waits in the overflow
        assert stream.dropped == 0
        fake.drain.set()
        wait_until(lambda: stream.forwarded == 5000, timeout=10, what="all 5000 messages delivered")
        assert delivered_values(fake, b"PV:1") == list(range(5000))
        assert metrics.snapshot()["updates_dropped"] == 0
    finally:
        producer.close(1)


def test_librdkafka_queue_full_moves_messages_to_the_overflow_not_the_floor():
    producer, fake, _ = make(capacity=1)
    fake.drain.clear()
    stream = StreamCounts("PV:1", "t")
    try:
        for n in range(3):
            producer.produce("t", b"PV:1", value(n), n, stream=stream)
        fake.drain.set()
        wait_until(lambda: stream.forwarded == 3, timeout=5, what="all three delivered")
        assert delivered_values(fake, b"PV:1") == [0, 1, 2]
    finally:
        producer.close(1)


def test_over_budget_drops_the_oldest_keeps_each_streams_newest_and_counts_exactly():
    # Budget: 2 messages in librdkafka + 8 in the overflow.
    producer, fake, metrics = make(buffer_bytes=10 * cost(b"A"), inflight_bytes=2 * cost(b"A"))
    fake.drain.clear()
    a, b = StreamCounts("A", "t"), StreamCounts("B", "t")
    try:
        producer.produce("t", b"B", value(0), 0, stream=b)  # B's only update, oldest of all
        for n in range(100):
            producer.produce("t", b"A", value(n), n, stream=a)
        assert producer.buffered()[1] <= 10 * cost(b"A")
        fake.drain.set()
        wait_until(
            lambda: a.forwarded + a.dropped == 100 and b.forwarded == 1,
            timeout=5,
            what="every message of A delivered or dropped, and B's one delivered",
        )
        got = delivered_values(fake, b"A")
        assert got[-1] == 99, "A's newest value must survive"
        assert got == sorted(got), "A's order must be kept"
        # A's first value was in librdkafka; the rest of the budget holds A's newest ones.
        assert got == [0, *range(92, 100)]
        assert a.dropped == 100 - len(got) == 91
        assert delivered_values(fake, b"B") == [0], "B's newest (and only) value survives"
        assert b.dropped == 0
        assert metrics.snapshot()["updates_dropped"] == 91
    finally:
        producer.close(1)


def test_many_streams_over_budget_each_keeps_its_latest_value():
    producer, fake, _ = make(buffer_bytes=20 * cost(b"S10"), inflight_bytes=cost(b"S10"))
    fake.drain.clear()
    streams = {f"S{i}".encode(): StreamCounts(f"S{i}", "t") for i in range(30)}
    try:
        for n in range(50):
            for key, stream in streams.items():
                producer.produce("t", key, value(n), n, stream=stream)
        fake.drain.set()
        wait_until(
            lambda: all(s.forwarded + s.dropped == 50 for s in streams.values()),
            timeout=5,
            what="every message of every stream delivered or dropped",
        )
        for key, stream in streams.items():
            got = delivered_values(fake, key)
            assert got[-1] == 49 and got == sorted(got), (key, got)
            assert stream.dropped == 50 - len(got)
    finally:
        producer.close(1)


def test_permanent_delivery_failure_is_a_drop_of_its_stream_named_per_topic_in_the_log(caplog):
    producer, fake, metrics = make(fail_delivery=True)
    streams = [StreamCounts("A", "bad1"), StreamCounts("B", "bad2")]
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(5):
                for stream in streams:
                    producer.produce(stream.topic, None, b"x", 1, stream=stream)
            wait_until(
                lambda: all(s.dropped == 5 for s in streams),
                timeout=5,
                what="five failed delivery reports per stream",
            )
        for stream in streams:
            assert "too large" in stream.error.lower()
            assert caplog.text.count(f"for topic {stream.topic}:") == 1  # rate-limited per topic
        assert metrics.snapshot()["updates_dropped"] == 10
        assert metrics.snapshot()["successful_sends"] == 0
    finally:
        producer.close(1)


def test_client_side_produce_exception_is_a_drop_not_raised(caplog):
    producer, fake, metrics = make()

    def refuse(*args, **kwargs):
        raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))

    fake.produce = refuse
    stream = StreamCounts("A", "t")
    try:
        producer.produce("t", None, b"huge", 1, stream=stream)
        assert stream.dropped == 1 and stream.error
        assert metrics.snapshot()["updates_dropped"] == 1
        assert "Could not produce" in caplog.text
    finally:
        producer.close(1)


@pytest.mark.parametrize("fail_delivery", [False, True])
def test_a_control_producer_without_metrics_delivers_and_drops_per_stream(fail_delivery):
    """Status and storage producers get no metrics: their counts are per stream only."""
    fake = FakeConfluent(fail_delivery=fail_delivery)
    producer = Producer({}, None, confluent_producer=fake)
    stream = StreamCounts("(status)", "status")
    try:
        producer.produce("status", None, b"x", 1, stream=stream)
        wait_until(
            lambda: stream.forwarded + stream.dropped == 1,
            timeout=5,
            what="the delivery report",
        )
        assert (stream.dropped == 1) == fail_delivery
    finally:
        producer.close(1)


def test_drops_are_summarised_in_one_error_line_at_most_every_10s(caplog):
    now = [0.0]
    producer, fake, _ = make(buffer_bytes=3 * cost(), inflight_bytes=cost(), clock=lambda: now[0])
    fake.drain.clear()
    stream = StreamCounts("PV:A", "t")
    try:
        with caplog.at_level(logging.ERROR, logger="forwarder.kafka.producer"):
            for n in range(10):  # 1 in flight, 2 in the overflow: 7 dropped
                producer.produce("t", None, value(n), n, stream=stream)
            wait_until(
                lambda: "7 updates dropped" in caplog.text, timeout=5, what="the first summary"
            )
            for n in range(10, 15):
                producer.produce("t", None, value(n), n, stream=stream)
            time.sleep(0.3)  # several poll-loop passes; the interval has not passed
            assert "updates dropped" not in caplog.text.split("7 updates dropped", 1)[1]
            now[0] = 11.0
            wait_until(
                lambda: "5 updates dropped" in caplog.text, timeout=5, what="the next summary"
            )
        assert "PV:A -> t: 5" in caplog.text
        assert stream.dropped == 12
    finally:
        fake.drain.set()
        producer.close(1)


def test_close_delivers_the_overflow_too():
    producer, fake, _ = make(capacity=2, inflight_bytes=2 * cost(b"PV:1"))
    fake.drain.clear()
    stream = StreamCounts("PV:1", "t")
    for n in range(500):
        producer.produce("t", b"PV:1", value(n), n, stream=stream)
    threading.Timer(0.2, fake.drain.set).start()  # the broker comes back during shutdown
    producer.close(5)
    assert fake.flushed
    assert not producer._poller.is_alive()
    assert delivered_values(fake, b"PV:1") == list(range(500))
    assert stream.forwarded == 500 and stream.dropped == 0


def test_close_counts_what_it_could_not_deliver_and_refuses_more(caplog):
    producer, fake, metrics = make(capacity=2, inflight_bytes=2 * cost(b"PV:1"))
    fake.drain.clear()  # the broker never comes back
    stream = StreamCounts("PV:1", "t")
    for n in range(10):
        producer.produce("t", b"PV:1", value(n), n, stream=stream)
    with caplog.at_level(logging.ERROR):
        producer.close(0.3)
    assert stream.dropped == 8  # the overflow; 2 stay in librdkafka, lost with the process
    assert metrics.snapshot()["updates_dropped"] == 10
    assert "closed with 10 messages not delivered" in caplog.text
    producer.produce("t", b"PV:1", value(99), 99, stream=stream)
    assert stream.dropped == 9
    assert len(fake.produced) == 2


def test_defaults_never_expire_queued_data_and_do_not_override_the_callers_settings():
    import forwarder.kafka.producer as module

    seen: list[dict] = []

    class Capture(FakeConfluent):
        def __init__(self, config):
            super().__init__()
            seen.append(config)

    original = module.ConfluentProducer
    module.ConfluentProducer = Capture
    try:
        for config in (
            {"bootstrap.servers": "b:9092", "linger.ms": "50"},
            {"delivery.timeout.ms": "1000"},
        ):
            Producer(config, Metrics()).close(1)
    finally:
        module.ConfluentProducer = original
    assert seen[0]["bootstrap.servers"] == "b:9092"
    assert seen[0]["linger.ms"] == "50"
    assert seen[0]["compression.type"] == PERFORMANCE_DEFAULTS["compression.type"]
    assert seen[0]["message.timeout.ms"] == 0
    # A refused or missing topic is reported within seconds, the backlog resumes within 1 s.
    assert seen[0]["topic.metadata.propagation.max.ms"] <= 5000
    assert seen[0]["reconnect.backoff.max.ms"] <= 1000
    assert "message.timeout.ms" not in seen[1]  # the caller set its alias
    assert seen[1]["delivery.timeout.ms"] == "1000"


def test_one_request_in_flight_keeps_order_across_retries_unless_the_caller_sets_it():
    from forwarder.kafka.producer import producer_config

    assert producer_config({})["max.in.flight.requests.per.connection"] == 1
    assert "enable.idempotence" not in producer_config({})
    # The caller's own setting, under either name, wins.
    assert "max.in.flight.requests.per.connection" not in producer_config({"max.in.flight": "5"})
    assert (
        producer_config({"max.in.flight.requests.per.connection": "5"})[
            "max.in.flight.requests.per.connection"
        ]
        == "5"
    )


def test_real_librdkafka_accepts_the_defaults():
    from confluent_kafka import Producer as ConfluentProducer

    from forwarder.kafka.producer import producer_config

    ConfluentProducer(producer_config({"bootstrap.servers": "127.0.0.1:1"})).flush(0)


# --- the stall watch: librdkafka holding messages with no delivery report -------------------


def make_replaceable(clients: list[FakeConfluent], now: list[float]):
    """A producer on ``clients[0]`` whose replacements are the next ones, on a fake clock."""
    made = iter(clients)
    metrics = Metrics()
    producer = Producer({}, metrics, make_client=lambda: next(made), clock=lambda: now[0])
    return producer, metrics


def advance(now: list[float], producer: Producer, seconds: float) -> None:
    """Move the fake clock a second at a time; after each, wait for the watch to look."""
    for _ in range(int(seconds)):
        checks = producer.stall_checks
        now[0] += 1.0
        wait_until(
            lambda checks=checks: producer.stall_checks > checks,
            timeout=5,
            what=f"the stall watch's pass at {now[0]:.0f} s on the fake clock",
        )


def test_a_client_holding_messages_while_a_new_one_reaches_the_broker_is_replaced_in_order(
    caplog,
):
    now = [0.0]
    stuck, fresh = FakeConfluent(), FakeConfluent()
    stuck.drain.clear()  # holds everything, reports nothing, says nothing
    producer, metrics = make_replaceable([stuck, fresh], now)
    a, b = StreamCounts("PV:A", "t"), StreamCounts("PV:B", "t")
    try:
        with caplog.at_level(logging.ERROR, logger="forwarder.kafka.producer"):
            for n in range(100):
                producer.produce("t", b"PV:A", value(n), n, stream=a)
                producer.produce("t", b"PV:B", value(n), n, stream=b)
            advance(now, producer, 16)
            wait_until(
                lambda: a.error is not None and b.error is not None,
                timeout=5,
                what="both streams' status error naming the stall",
            )
            assert (
                a.error == "no delivery report for 16 s with 100 messages held by the Kafka client"
            )
            assert "200 messages of 2 streams held" in caplog.text
            assert producer.replacements == 0  # the broker answered only just now: grace

            def produce_more():  # during the swap: behind the moved ones all the same
                for n in range(100, 150):
                    producer.produce("t", b"PV:A", value(n), n, stream=a)

            stuck.on_purge = produce_more
            advance(now, producer, 11)
            wait_until(lambda: producer.replacements == 1, timeout=5, what="the replacement")
            wait_until(
                lambda: a.forwarded == 150 and b.forwarded == 100,
                timeout=5,
                what="every message delivered by the new client",
            )
        assert delivered_values(fresh, b"PV:A") == list(range(150))
        assert delivered_values(fresh, b"PV:B") == list(range(100))
        assert [ts for _, k, _, ts in fresh.produced if k == b"PV:B"] == list(range(100))
        assert stuck.delivered == []
        assert (a.dropped, b.dropped, a.error, b.error) == (0, 0, None, None)
        snapshot = metrics.snapshot()
        assert snapshot["producer_replacements"] == 1
        assert snapshot["updates_dropped"] == 0
        assert "200 messages moved to the new client in order, 0 lost" in caplog.text
    finally:
        producer.close(1)


def test_a_broker_no_new_client_reaches_is_an_outage_the_messages_wait_for(caplog):
    now = [0.0]
    stuck = FakeConfluent()
    stuck.drain.clear()
    probes = [FakeConfluent() for _ in range(20)]
    for probe in probes:
        probe.reachable = False
    producer, metrics = make_replaceable([stuck, *probes], now)
    a = StreamCounts("PV:A", "t")
    try:
        with caplog.at_level(logging.ERROR, logger="forwarder.kafka.producer"):
            for n in range(10):
                producer.produce("t", b"PV:A", value(n), n, stream=a)
            advance(now, producer, 40)
            wait_until(
                lambda: "a new client cannot reach the broker either" in caplog.text,
                timeout=5,
                what="the failed probe in the log",
            )
        assert a.error is not None and a.error.startswith("no delivery report for")
        assert producer.replacements == 0
        stuck.drain.set()  # the broker is back, the old client delivers
        wait_until(lambda: a.forwarded == 10, timeout=5, what="the held messages delivered")
        assert delivered_values(stuck, b"PV:A") == list(range(10))
        assert a.error is None and metrics.snapshot()["updates_dropped"] == 0
    finally:
        producer.close(1)


def test_a_client_that_resumes_within_the_grace_is_kept():
    now = [0.0]
    slow, fresh = FakeConfluent(), FakeConfluent()
    slow.drain.clear()
    producer, _ = make_replaceable([slow, fresh], now)
    a = StreamCounts("PV:A", "t")
    try:
        for n in range(10):
            producer.produce("t", b"PV:A", value(n), n, stream=a)
        advance(now, producer, 16)
        wait_until(lambda: a.error is not None, timeout=5, what="the stall in status")
        slow.drain.set()  # reconnects a few seconds after the broker's return
        wait_until(lambda: a.forwarded == 10, timeout=5, what="the old client delivering")
        advance(now, producer, 15)
        assert producer.replacements == 0
        assert fresh.produced == [] and a.error is None
    finally:
        producer.close(1)


def test_streams_that_deliver_are_not_stalled_however_long_they_run():
    now = [0.0]
    producer, _ = make_replaceable([FakeConfluent(), FakeConfluent()], now)
    a = StreamCounts("PV:A", "t")
    try:
        for n in range(30):
            producer.produce("t", b"PV:A", value(n), n, stream=a)
            advance(now, producer, 1)
        wait_until(lambda: a.forwarded == 30, timeout=5, what="every message delivered")
        assert a.error is None and producer.replacements == 0
    finally:
        producer.close(1)


def test_messages_the_old_client_never_gives_back_are_counted_as_dropped_per_stream(
    caplog, monkeypatch
):
    monkeypatch.setattr("forwarder.kafka.producer.RESCUE_TIMEOUT_S", 0.5)
    now = [0.0]
    stuck, fresh = FakeConfluent(), FakeConfluent()
    stuck.drain.clear()
    stuck.unpurgeable = 3
    producer, metrics = make_replaceable([stuck, fresh], now)
    a = StreamCounts("PV:A", "t")
    try:
        with caplog.at_level(logging.ERROR, logger="forwarder.kafka.producer"):
            for n in range(100):
                producer.produce("t", b"PV:A", value(n), n, stream=a)
            advance(now, producer, 27)
            wait_until(lambda: a.forwarded == 97, timeout=5, what="the rest delivered")
        assert delivered_values(fresh, b"PV:A") == list(range(3, 100))
        assert a.dropped == 3 and metrics.snapshot()["updates_dropped"] == 3
        assert "97 messages moved to the new client in order, 3 lost with the old one" in (
            caplog.text
        )
        assert "lost with a replaced Kafka client: 3" in caplog.text
    finally:
        producer.close(1)


def test_rescued_messages_keep_their_own_timestamps_when_older_ones_finish_in_flight():
    """librdkafka reports the purged (queued) messages before the older ones in flight."""
    now = [0.0]
    stuck, fresh = FakeConfluent(), FakeConfluent()
    stuck.drain.clear()
    stuck.unpurgeable = 3
    stuck.on_purge = stuck.drain.set  # the 3 in flight are acknowledged after the purge
    producer, _ = make_replaceable([stuck, fresh], now)
    a = StreamCounts("PV:A", "t")
    try:
        for n in range(100):
            producer.produce("t", b"PV:A", value(n), 1000 + n, stream=a)
        advance(now, producer, 27)
        wait_until(lambda: a.forwarded == 100, timeout=5, what="all 100 delivered")
        assert delivered_values(stuck, b"PV:A") == [0, 1, 2]
        assert delivered_values(fresh, b"PV:A") == list(range(3, 100))
        assert [ts for _, k, _, ts in fresh.produced if k == b"PV:A"] == list(range(1003, 1100))
        assert a.dropped == 0 and not a.held_timestamps
    finally:
        producer.close(1)


def test_deliveries_reach_the_metrics_as_tallies_without_losing_any():
    producer, fake, metrics = make()
    stream = StreamCounts("PV:1", "t")
    try:
        for n in range(5000):
            producer.produce("t", b"PV:1", value(n), n, stream=stream)
        wait_until(
            lambda: metrics.snapshot()["successful_sends"] == 5000,
            timeout=10,
            what="5000 deliveries in the metrics",
        )
        latency = metrics.snapshot()["latency_produce_to_delivery"]
        assert latency == {"count": 5000, "sum": 5000 * 0.25}
        assert stream.forwarded == 5000
    finally:
        producer.close(1)
