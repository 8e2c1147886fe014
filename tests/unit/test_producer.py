"""The shared producer: what reaches confluent-kafka, delivery metrics, back-pressure, close."""

from __future__ import annotations

import logging
import threading

from confluent_kafka import KafkaError, KafkaException

from forwarder.kafka.producer import PERFORMANCE_DEFAULTS, Producer
from forwarder.metrics import Metrics
from helpers.polling import wait_until


class FakeMessage:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic

    def latency(self) -> float:
        return 0.25


class FakeConfluent:
    """Stands in for confluent_kafka.Producer: a bounded queue drained by poll/flush."""

    def __init__(self, capacity: int = 1000, fail_delivery: bool = False) -> None:
        self.capacity = capacity
        self.fail_delivery = fail_delivery
        self.produced: list[tuple] = []
        self.queue: list[tuple] = []
        self.drain = threading.Event()  # poll only frees the queue while this is set
        self.drain.set()
        self.lock = threading.Lock()
        self.flushed = False

    def produce(self, topic, value, key, timestamp, on_delivery):
        with self.lock:
            if len(self.queue) >= self.capacity:
                raise BufferError("Local: Queue full")
            self.produced.append((topic, key, value, timestamp))
            self.queue.append((topic, on_delivery))

    def poll(self, timeout):
        if not self.drain.is_set():
            self.drain.wait(timeout)
            return 0
        with self.lock:
            queue, self.queue = self.queue, []
        for topic, callback in queue:
            err = KafkaError(KafkaError._MSG_TIMED_OUT) if self.fail_delivery else None
            callback(err, FakeMessage(topic))
        return len(queue)

    def flush(self, timeout):
        self.flushed = True
        self.poll(0)
        with self.lock:
            return len(self.queue)


def make(**kwargs):
    fake = FakeConfluent(**kwargs)
    metrics = Metrics()
    return Producer({}, metrics, confluent_producer=fake, buffer_retry_s=0.3), fake, metrics


def test_produce_passes_topic_key_value_timestamp_and_counts_delivery():
    producer, fake, metrics = make()
    try:
        producer.produce("topic", b"PV:1", b"payload", 1234)
        assert fake.produced == [("topic", b"PV:1", b"payload", 1234)]
        wait_until(
            lambda: metrics.snapshot()["successful_sends"] == 1,
            timeout=5,
            what="the poll thread to deliver the report",
        )
        latency = metrics.snapshot()["latency_produce_to_delivery"]
        assert latency == {"count": 1, "sum": 0.25}
    finally:
        producer.close(1)


def test_delivery_errors_are_counted_and_logged_rate_limited(caplog):
    producer, fake, metrics = make(fail_delivery=True)
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(5):
                producer.produce("t", None, b"x", 1)
            wait_until(
                lambda: metrics.snapshot()["send_delivery_errors"] == 5,
                timeout=5,
                what="five failed delivery reports",
            )
        assert caplog.text.count("delivery to t failed") == 1
        assert metrics.snapshot()["successful_sends"] == 0
    finally:
        producer.close(1)


def test_full_queue_applies_back_pressure_then_sends():
    producer, fake, metrics = make(capacity=1)
    fake.drain.clear()
    try:
        producer.produce("t", None, b"first", 1)
        done = threading.Event()

        def second():
            producer.produce("t", None, b"second", 2)
            done.set()

        thread = threading.Thread(target=second)
        thread.start()
        assert not done.wait(0.05)  # blocked on the full queue, not dropped
        fake.drain.set()
        wait_until(done.is_set, timeout=5, what="produce() to return after the queue drained")
        thread.join()
        assert [v for _, _, v, _ in fake.produced] == [b"first", b"second"]
        assert metrics.snapshot()["send_buffer_errors"] == 0
    finally:
        producer.close(1)


def test_queue_full_beyond_the_bound_counts_a_buffer_error(caplog):
    producer, fake, metrics = make(capacity=1)
    fake.drain.clear()
    try:
        producer.produce("t", None, b"first", 1)
        with caplog.at_level(logging.ERROR):
            producer.produce("t", None, b"lost", 2)
        assert metrics.snapshot()["send_buffer_errors"] == 1
        assert "queue full" in caplog.text
    finally:
        fake.drain.set()
        producer.close(1)


def test_produce_exception_is_counted_not_raised(caplog):
    producer, fake, metrics = make()

    def refuse(*args, **kwargs):
        raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))

    fake.produce = refuse
    try:
        producer.produce("t", None, b"huge", 1)
        assert metrics.snapshot()["send_delivery_errors"] == 1
        assert "Could not produce" in caplog.text
    finally:
        producer.close(1)


def test_close_flushes_stops_poll_thread_and_refuses_more():
    producer, fake, metrics = make()
    producer.produce("t", None, b"x", 1)
    producer.close(1)
    assert fake.flushed
    assert not producer._poller.is_alive()
    producer.produce("t", None, b"late", 2)
    assert len(fake.produced) == 1
    assert metrics.snapshot()["send_buffer_errors"] == 1


def test_defaults_do_not_override_the_callers_settings():
    import forwarder.kafka.producer as module

    seen = {}

    class Capture(FakeConfluent):
        def __init__(self, config):
            super().__init__()
            seen.update(config)

    original = module.ConfluentProducer
    module.ConfluentProducer = Capture
    try:
        producer = Producer({"bootstrap.servers": "b:9092", "linger.ms": "50"}, Metrics())
        producer.close(1)
    finally:
        module.ConfluentProducer = original
    assert seen["bootstrap.servers"] == "b:9092"
    assert seen["linger.ms"] == "50"
    assert seen["compression.type"] == PERFORMANCE_DEFAULTS["compression.type"]
