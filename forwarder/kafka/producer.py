"""The one Kafka producer all streams share.

confluent-kafka does the batching and network I/O in librdkafka's threads; this wrapper adds
what the forwarder needs around it: a poll thread so delivery reports (and their metrics)
arrive without any stream having to poll, back-pressure instead of silent loss when the
local queue is full, and rate-limited logging so a broker outage does not flood the log.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as ConfluentProducer

from forwarder.log_throttle import RateLimitedLog
from forwarder.metrics import Metrics

log = logging.getLogger(__name__)

# Throughput defaults, applied only where the caller's config does not set the key:
# * linger.ms 5: a few ms of batching gives large batches at high update rates and costs
#   little latency at low rates.
# * a large local queue (1M messages / 1 GiB) absorbs broker hiccups before back-pressure.
# * lz4: cheap on CPU; FlatBuffers repeat source names and often carry slowly varying arrays.
# * message.max.bytes 100 MB so large waveforms/images are not refused client-side (the
#   broker and topic must allow them too).
PERFORMANCE_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "compression.type": "lz4",
    "message.max.bytes": 100_000_000,
}

BUFFER_RETRY_S = 5.0  # how long produce() applies back-pressure before giving up a message
POLL_INTERVAL_S = 0.1


class Producer:
    """Thread-safe produce/flush/close over one confluent-kafka producer."""

    def __init__(
        self,
        config: dict[str, str],
        metrics: Metrics,
        *,
        confluent_producer: Any | None = None,
        buffer_retry_s: float = BUFFER_RETRY_S,
    ) -> None:
        self._metrics = metrics
        self._buffer_retry_s = buffer_retry_s
        if confluent_producer is None:  # not `or`: a Producer with an empty queue is falsy
            confluent_producer = ConfluentProducer({**PERFORMANCE_DEFAULTS, **config})
        self._producer = confluent_producer
        self._delivery_errors = RateLimitedLog(log)
        self._buffer_errors = RateLimitedLog(log)
        self._produce_errors = RateLimitedLog(log)
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue one message; blocks up to the retry bound while the local queue is full."""
        if self._closed.is_set():
            self._metrics.inc("send_buffer_errors")
            self._buffer_errors.error("Message to %s not sent: the producer is closed", topic)
            return
        deadline = None
        while True:
            try:
                if headers is None:
                    self._producer.produce(
                        topic, value, key, timestamp=timestamp_ms, on_delivery=self._on_delivery
                    )
                else:
                    self._producer.produce(
                        topic,
                        value,
                        key,
                        timestamp=timestamp_ms,
                        on_delivery=self._on_delivery,
                        headers=headers,
                    )
                return
            except BufferError:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._buffer_retry_s
                elif now >= deadline:
                    self._metrics.inc("send_buffer_errors")
                    self._buffer_errors.error(
                        "Kafka producer queue full for %.1fs; message to %s dropped",
                        self._buffer_retry_s,
                        topic,
                    )
                    return
                # Serve delivery reports so librdkafka can free queue space, then retry.
                self._producer.poll(0.05)
            except (KafkaException, ValueError, TypeError) as e:
                self._metrics.inc("send_delivery_errors")
                self._produce_errors.error("Could not produce message to %s: %s", topic, e)
                return

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        # Runs in whichever thread polls (normally the poll thread).
        try:
            if err is not None:
                self._metrics.inc("send_delivery_errors")
                self._delivery_errors.error(
                    "Kafka delivery to %s failed: %s", msg.topic() if msg else "?", err
                )
                return
            self._metrics.inc("successful_sends")
            latency = msg.latency()
            if latency is not None:
                self._metrics.observe("latency_produce_to_delivery", latency)
        except Exception:
            log.exception("Error handling a Kafka delivery report")

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            try:
                self._producer.poll(POLL_INTERVAL_S)
            except Exception:
                log.exception("Error polling the Kafka producer")
                self._closed.wait(POLL_INTERVAL_S)

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for queued messages to be delivered; return how many remain."""
        return self._producer.flush(timeout)

    def close(self, timeout: float) -> None:
        """Deliver what is queued within ``timeout`` s, then stop the poll thread."""
        if self._closed.is_set():
            return
        left = self._producer.flush(timeout)
        self._closed.set()
        self._poller.join(timeout=POLL_INTERVAL_S * 10)
        if left:
            log.error("Kafka producer closed with %d messages not delivered", left)
