"""The one Kafka producer all streams share, with a bounded buffer that loses nothing silently.

confluent-kafka does the batching and network I/O in librdkafka's threads. Around it:

* ``produce`` only hands off, in bounded time whatever the broker does: under one short lock
  the message goes either straight into librdkafka (fast path) or to the back of our own
  overflow deque. It never retries, sleeps or polls, so EPICS callback threads never wait.
* librdkafka holds at most ``inflight_bytes`` of our messages (our own accounting: payload +
  key + ``PER_MESSAGE_OVERHEAD``, added on produce, released on the delivery report). That
  cap is a small part of the budget, because a message handed to librdkafka can no longer be
  taken back; drops must fall on our deque. librdkafka's own queue limits (1M messages,
  1 GiB) stay above the cap; if it still refuses (BufferError), the message goes to the
  overflow like any other.
* While the overflow is non-empty, new messages go behind it, so each stream's messages reach
  Kafka in order. The poll thread serves delivery reports and, as they free room, moves the
  overflow's head into librdkafka.
* The whole buffer (librdkafka + overflow) is bounded by the operator's budget
  (``--producer-buffer-mb``). Over budget, the oldest overflow entry is dropped, unless it is
  its stream's newest pending message: that one moves to the back, so every stream's latest
  state arrives after recovery. If only such entries are left, the budget is exceeded by at
  most one message per stream.
* ``message.timeout.ms`` is 0 (never expire) unless configured: data waits for the broker.
  The default budget (``DEFAULT_BUFFER_MB``) holds a 5-minute outage at 10k scalar f144
  updates/s (3M messages of ~100 bytes, ~360 bytes each with overhead).
* Every drop (over budget, a permanent delivery failure such as an unknown topic or a message
  too large, or a message produced after close) is counted per stream (``StreamCounts``), in
  the ``updates_dropped`` metric and in one ERROR summary line at most every
  ``DROP_LOG_INTERVAL_S``. Delivery failures are also logged per topic (rate-limited per
  topic) and kept as the stream's ``error`` for the status message.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as ConfluentProducer

from forwarder.kafka.buffer_budget import DEFAULT_BUFFER_MB, PER_MESSAGE_OVERHEAD
from forwarder.kafka.stream_counts import StreamCounts
from forwarder.log_throttle import RateLimitedLog
from forwarder.metrics import Metrics

log = logging.getLogger(__name__)

# Throughput defaults, applied only where the caller's config does not set the key:
# * linger.ms 5: a few ms of batching gives large batches at high update rates and costs
#   little latency at low rates.
# * librdkafka's local queue (1M messages / 1 GiB) stays above our in-flight cap.
# * lz4: cheap on CPU; FlatBuffers repeat source names and often carry slowly varying arrays.
# * message.max.bytes 100 MB so large waveforms/images are not refused client-side (the
#   broker and topic must allow them too).
# * message.timeout.ms 0: queued data never expires; the budget bounds memory instead.
# * reconnect.backoff.max.ms 1 s (librdkafka: 10 s): after an outage the backlog starts to
#   flow within a second of the broker's return.
# * topic.metadata.refresh.interval.ms 3 s (librdkafka: 5 min): seen once in the rig, a
#   partition whose leader went to -1 during a broker restart stayed stuck (messages held,
#   never sent) after the broker returned; a periodic refresh bounds that.
# * topic.metadata.propagation.max.ms 5 s (librdkafka: 30 s): a topic the broker lacks is
#   reported (and its messages counted as dropped) within seconds, not half a minute.
# * max.in.flight.requests.per.connection 1: with more requests in flight, librdkafka may
#   deliver a partition's messages out of order when requests are retried across a broker
#   restart (seen in the rig under parallel tests: a counter's values 4..247 after 248..,
#   none lost). enable.idempotence would keep order too, but after a broker container
#   restart its producer delivered nothing more (74,000 messages held, no error).
PERFORMANCE_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "compression.type": "lz4",
    "message.max.bytes": 100_000_000,
    "message.timeout.ms": 0,
    "reconnect.backoff.max.ms": 1000,
    "topic.metadata.refresh.interval.ms": 3000,
    "topic.metadata.propagation.max.ms": 5000,
    "max.in.flight.requests.per.connection": 1,
}
_ALIASES = {
    "message.timeout.ms": "delivery.timeout.ms",
    "max.in.flight.requests.per.connection": "max.in.flight",
}

MAX_INFLIGHT_BYTES = 64 * 1024 * 1024
POLL_INTERVAL_S = 0.1
DRAIN_POLL_S = 0.01  # poll interval while the overflow waits for room
DRAIN_BATCH = 200  # overflow entries moved per hold of the lock (a few hundred µs)
DROP_LOG_INTERVAL_S = 10.0
TOPIC_LOG_INTERVAL_S = 10.0


def producer_config(config: dict[str, Any]) -> dict[str, Any]:
    """The caller's config over our defaults (an alias the caller set counts as set)."""
    merged = {**PERFORMANCE_DEFAULTS, **config}
    for key, alias in _ALIASES.items():
        if alias in config and key not in config:
            del merged[key]
    return merged


class Producer:
    """Thread-safe produce/flush/close over one confluent-kafka producer (see module doc)."""

    def __init__(
        self,
        config: dict[str, Any],
        metrics: Metrics | None,
        *,
        confluent_producer: Any | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_MB * 1024 * 1024,
        inflight_bytes: int | None = None,
        clock=time.monotonic,
    ) -> None:
        self._metrics = metrics  # None: a control producer (status, storage), not data
        if confluent_producer is None:  # not `or`: a Producer with an empty queue is falsy
            confluent_producer = ConfluentProducer(producer_config(config))
        self._producer = confluent_producer
        self._budget = buffer_bytes
        self._inflight_cap = (
            inflight_bytes
            if inflight_bytes is not None
            else max(1, min(MAX_INFLIGHT_BYTES, buffer_bytes // 8))
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._inflight = 0  # bytes in librdkafka
        self._overflow: collections.deque[tuple] = collections.deque()
        self._overflow_bytes = 0
        self._untracked = StreamCounts("(no stream)", "")
        # Drops since the last summary line: (channel, topic) -> count, and by reason.
        self._drops_since_log: collections.Counter = collections.Counter()
        self._drop_reasons: collections.Counter = collections.Counter()
        self._last_drop_log = float("-inf")
        self._topic_logs: dict[str, RateLimitedLog] = {}
        self._produce_errors = RateLimitedLog(log)
        self._closing = False
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    # --- hand-off (EPICS callback threads) ---------------------------------------------------

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        stream: StreamCounts | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Hand one message over; returns at once whatever the broker does. ``headers``
        (Kafka record headers) only for the control topics: the data path has none."""
        counts = stream if stream is not None else self._untracked
        cost = len(value) + PER_MESSAGE_OVERHEAD
        if key:
            cost += len(key)
        callback = counts.on_delivery or self._bind(counts)
        with self._lock:
            # Fast path: nothing waiting in the overflow and room in flight.
            inflight = self._inflight
            if (
                not self._overflow
                and (inflight + cost <= self._inflight_cap or not inflight)
                and not self._closing
            ):
                try:
                    if headers is None:
                        self._producer.produce(
                            topic, value, key, timestamp=timestamp_ms, on_delivery=callback
                        )
                    else:
                        self._producer.produce(
                            topic,
                            value,
                            key,
                            timestamp=timestamp_ms,
                            on_delivery=callback,
                            headers=headers,
                        )
                    self._inflight = inflight + cost
                    return
                except BufferError:
                    pass  # librdkafka's own queue is full: keep it in the overflow
                except (KafkaException, ValueError, TypeError) as e:
                    self._refused(topic, counts, e)
                    return
            self._hold(topic, key, value, timestamp_ms, counts, cost, headers)

    def _bind(self, counts: StreamCounts):
        """The delivery callback of one stream, made once per stream, not per message."""
        counts.on_delivery = functools.partial(self._on_delivery, counts)
        return counts.on_delivery

    def _send(self, topic, key, value, timestamp_ms, counts, cost, callback, headers) -> bool:
        """Into librdkafka (lock held); False if its queue is full and the caller must keep it."""
        try:
            if headers is None:
                self._producer.produce(
                    topic, value, key, timestamp=timestamp_ms, on_delivery=callback
                )
            else:
                self._producer.produce(
                    topic, value, key, timestamp=timestamp_ms, on_delivery=callback, headers=headers
                )
        except BufferError:
            return False
        except (KafkaException, ValueError, TypeError) as e:
            self._refused(topic, counts, e)
            return True
        self._inflight += cost
        return True

    def _refused(self, topic: str, counts: StreamCounts, error: Exception) -> None:
        """librdkafka refused the message outright (lock held): a drop of its stream."""
        if self._metrics is not None:
            self._metrics.inc("send_delivery_errors")
        self._drop(counts, "refused by the client")
        counts.error = str(error)
        self._produce_errors.error("Could not produce message to %s: %s", topic, error)

    def _hold(
        self, topic, key, value, timestamp_ms, counts: StreamCounts, cost: int, headers
    ) -> None:
        """Append to the overflow (lock held), then drop the oldest while over budget."""
        if self._closing:
            self._drop(counts, "produced after close")
            return
        entry = (topic, key, value, timestamp_ms, counts, cost, headers)
        self._overflow.append(entry)
        self._overflow_bytes += cost
        counts.newest = entry
        if self._inflight + self._overflow_bytes > self._budget:
            self._evict()

    def _evict(self) -> None:
        """Drop oldest overflow entries until within budget, sparing each stream's newest."""
        overflow = self._overflow
        spared = 0
        while self._inflight + self._overflow_bytes > self._budget and spared < len(overflow):
            entry = overflow.popleft()
            counts = entry[4]
            if entry is counts.newest:
                overflow.append(entry)
                spared += 1
                continue
            self._overflow_bytes -= entry[5]
            if self._metrics is not None:
                self._metrics.inc("send_buffer_errors")
            self._drop(counts, "buffer budget exhausted")

    def _drop(self, counts: StreamCounts, reason: str) -> None:
        counts.dropped += 1
        self._drops_since_log[(counts.channel, counts.topic)] += 1
        self._drop_reasons[reason] += 1
        if self._metrics is not None:
            self._metrics.inc("updates_dropped")

    # --- delivery reports and draining (poll thread) -----------------------------------------

    def _on_delivery(self, counts: StreamCounts, err: KafkaError | None, msg: Any) -> None:
        try:
            key = msg.key()
            # len(msg) is the value's length; msg.value() would copy the payload.
            cost = len(msg) + PER_MESSAGE_OVERHEAD + (len(key) if key else 0)
            with self._lock:
                self._inflight -= cost
                if err is None:
                    counts.forwarded += 1
                    counts.error = None
                else:
                    counts.error = err.str()
                    self._drop(counts, "refused by Kafka")
            if err is not None:
                if self._metrics is not None:
                    self._metrics.inc("send_delivery_errors")
                self._topic_log(msg.topic()).error(
                    "Kafka refused a message of %s for topic %s: %s",
                    counts.channel,
                    msg.topic(),
                    err.str(),
                )
                return
            if self._metrics is not None:
                self._metrics.inc("successful_sends")
                latency = msg.latency()
                if latency is not None:
                    self._metrics.observe("latency_produce_to_delivery", latency)
        except Exception:
            log.exception("Error handling a Kafka delivery report")

    def _topic_log(self, topic: str) -> RateLimitedLog:
        limited = self._topic_logs.get(topic)
        if limited is None:
            limited = self._topic_logs.setdefault(
                topic, RateLimitedLog(log, TOPIC_LOG_INTERVAL_S, self._clock)
            )
        return limited

    def _drain(self) -> None:
        """Move the overflow's head into librdkafka while the in-flight cap allows, in short
        batches so that a hand-off never waits behind a long drain for the lock."""
        overflow = self._overflow
        while True:
            with self._lock:
                for _ in range(DRAIN_BATCH):
                    if not overflow:
                        return
                    topic, key, value, timestamp_ms, counts, cost, headers = overflow[0]
                    if self._inflight and self._inflight + cost > self._inflight_cap:
                        return
                    callback = counts.on_delivery or self._bind(counts)
                    if not self._send(
                        topic, key, value, timestamp_ms, counts, cost, callback, headers
                    ):
                        return
                    overflow.popleft()
                    self._overflow_bytes -= cost

    def _log_drops(self, force: bool = False) -> None:
        """One ERROR line with the count of drops since the last one, at most every interval."""
        now = self._clock()
        if not force and now - self._last_drop_log < DROP_LOG_INTERVAL_S:
            return
        with self._lock:
            if not self._drops_since_log:
                return
            drops, self._drops_since_log = self._drops_since_log, collections.Counter()
            reasons, self._drop_reasons = self._drop_reasons, collections.Counter()
        self._last_drop_log = now
        worst = ", ".join(f"{c} -> {t}: {n}" for (c, t), n in drops.most_common(5))
        log.error(
            "%d updates dropped (%s) since the last report; per stream: %s%s",
            sum(drops.values()),
            ", ".join(f"{reason}: {n}" for reason, n in reasons.items()),
            worst,
            f" and {len(drops) - 5} more streams" if len(drops) > 5 else "",
        )

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            try:
                self._producer.poll(DRAIN_POLL_S if self._overflow else POLL_INTERVAL_S)
                if self._overflow:
                    self._drain()
                self._log_drops()
            except Exception:
                log.exception("Error polling the Kafka producer")
                self._closed.wait(POLL_INTERVAL_S)

    # --- flush and close (control thread) ----------------------------------------------------

    def buffered(self) -> tuple[int, int]:
        """(messages waiting in the overflow, bytes buffered in total)."""
        with self._lock:
            return len(self._overflow), self._inflight + self._overflow_bytes

    def _wait_overflow_empty(self, deadline: float) -> None:
        while self._overflow and self._clock() < deadline and self._poller.is_alive():
            self._closed.wait(DRAIN_POLL_S)

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for everything buffered to be delivered; return how many remain."""
        deadline = self._clock() + timeout
        self._wait_overflow_empty(deadline)
        left = self._producer.flush(max(0.0, deadline - self._clock()))
        return left + len(self._overflow)

    def close(self, timeout: float) -> None:
        """Deliver what was accepted (overflow included) within ``timeout`` s, then stop."""
        if self._closed.is_set():
            return
        deadline = self._clock() + timeout
        with self._lock:
            self._closing = True  # new messages are dropped (counted); the overflow drains
        self._wait_overflow_empty(deadline)
        in_kafka = self._producer.flush(max(0.0, deadline - self._clock()))
        self._closed.set()
        self._poller.join(timeout=POLL_INTERVAL_S * 10)
        with self._lock:
            in_overflow = len(self._overflow)
            while self._overflow:
                entry = self._overflow.popleft()
                self._overflow_bytes -= entry[5]
                self._drop(entry[4], "not delivered before shutdown")
        if in_kafka:
            # Still in librdkafka: lost with the process; its reports will never come.
            if self._metrics is not None:
                self._metrics.inc("updates_dropped", in_kafka)
        if in_kafka or in_overflow:
            log.error(
                "Kafka producer closed with %d messages not delivered",
                in_kafka + in_overflow,
            )
        self._log_drops(force=True)
