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
* A stall is reported and repaired, not waited out: librdkafka has been seen holding a
  partition's messages for good after a broker restart (leader -1, never delegated again),
  with no error. A stream whose messages have sat in librdkafka for ``stall_timeout_s``
  without one delivery report gets that as its status ``error``. If a new client then
  reaches the broker, it replaces the old one: the old client's queued messages are purged
  and put back at the head of the overflow in their order, to be sent again, after those
  in flight have finished on the old client; nothing is lost or sent twice. A broker that a new client cannot
  reach either is an outage: the messages wait, as before.
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
import weakref
from collections.abc import Callable
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
STALL_TIMEOUT_S = 15.0  # held with no delivery report this long: a stall, unless an outage
STALL_CHECK_S = 1.0
PROBE_TIMEOUT_S = 5.0  # a new client's metadata request: does the broker answer?
PROBE_INTERVAL_S = 1.0  # one probe at a time, so at most one new client
# The broker answered a new client this long ago and the stall goes on: a client that is
# not wedged reconnects and delivers within about a second. Taking over from one that would
# have is harmless: only its queued messages move, its requests in flight finish first.
REPLACE_GRACE_S = 3.0
RESCUE_TIMEOUT_S = 10.0  # serving the purged messages' reports of a replaced client
_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


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
        make_client: Callable[[], Any] | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_MB * 1024 * 1024,
        inflight_bytes: int | None = None,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        clock=time.monotonic,
    ) -> None:
        self._metrics = metrics  # None: a control producer (status, storage), not data
        if make_client is None and confluent_producer is None:
            merged = producer_config(config)
            make_client = functools.partial(ConfluentProducer, merged)
        self._make_client = make_client  # a replacement for a stalled client; None: none
        if confluent_producer is None:  # not `or`: a Producer with an empty queue is falsy
            confluent_producer = make_client()
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
        # The stall watch: every stream that has sent a message, checked every second.
        self._watched: weakref.WeakSet[StreamCounts] = weakref.WeakSet()
        self._stall_timeout = stall_timeout_s
        self._next_stall_check = clock() + STALL_CHECK_S
        self._stall_log = RateLimitedLog(log, DROP_LOG_INTERVAL_S, clock)
        self._probe_log = RateLimitedLog(log, DROP_LOG_INTERVAL_S, clock)
        self._probing = False
        self._next_probe = float("-inf")
        # (a new client that reached the broker, when it did): the replacement in waiting
        self._candidate: tuple[Any | None, float] = (None, 0.0)
        self._rescued: list[tuple] | None = None  # a replaced client's purged messages
        self._delivered = 0  # since the last poll: delivery tallies for the metrics
        self._latencies = 0
        self._latency_sum = 0.0
        self.replacements = 0
        self.stall_checks = 0  # passes of the watch, so a test on a fake clock can follow it
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
                and self._rescued is None
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
                    counts.held_timestamps.append(timestamp_ms)
                    return
                except BufferError:
                    pass  # librdkafka's own queue is full: keep it in the overflow
                except (KafkaException, ValueError, TypeError) as e:
                    self._refused(topic, counts, e)
                    return
            self._hold(topic, key, value, timestamp_ms, counts, cost, headers)

    def _bind(self, counts: StreamCounts):
        """The delivery callback of one stream, made once per stream, not per message; from
        then on the stall watch sees the stream."""
        counts.on_delivery = functools.partial(self._on_delivery, counts)
        counts.progress_at = self._clock()
        self._watched.add(counts)
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
        counts.held_timestamps.append(timestamp_ms)
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
                counts.reported += 1
                if err is not None and self._rescued is not None and err.code() in _PURGED:
                    # Purged from a replaced client: sent again, not dropped. Its timestamp
                    # is set once the older messages in flight have reported (_replace_client).
                    self._rescued.append(
                        (msg.topic(), key, msg.value(), None, counts, cost, msg.headers())
                    )
                    return
                counts.held_timestamps.popleft()
                if err is None:
                    counts.forwarded += 1
                    counts.error = None
                    # Tallied here and added to the metrics once per poll, not with two
                    # more locked calls per message.
                    self._delivered += 1
                    latency = msg.latency()
                    if latency is not None:
                        self._latencies += 1
                        self._latency_sum += latency
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
                    entry = overflow[0]
                    topic, key, value, timestamp_ms, counts, cost, headers = entry
                    if self._inflight and self._inflight + cost > self._inflight_cap:
                        return
                    callback = counts.on_delivery or self._bind(counts)
                    if not self._send(
                        topic, key, value, timestamp_ms, counts, cost, callback, headers
                    ):
                        return
                    overflow.popleft()
                    self._overflow_bytes -= cost
                    if counts.newest is entry:
                        counts.newest = None

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

    # --- the stall watch (poll thread) -------------------------------------------------------

    def _watch_stalls(self) -> None:
        """Name each stream whose messages sit in librdkafka without a delivery report for
        ``stall_timeout_s``. While any does, probe the broker with a new client; once that
        client has reached it and the stall has outlasted ``REPLACE_GRACE_S`` (the old client
        reconnects within seconds of a broker's return), the new client takes over."""
        now = self._clock()
        if now < self._next_stall_check:
            return
        self._next_stall_check = now + STALL_CHECK_S
        self.stall_checks += 1
        stalled: list[StreamCounts] = []
        for counts in list(self._watched):
            reported = counts.reported
            if reported != counts.progress_mark or not counts.held_timestamps:
                counts.progress_mark = reported
                counts.progress_at = now
            elif now - counts.progress_at >= self._stall_timeout:
                stalled.append(counts)
        if not stalled:
            self._set_candidate(None)
            return
        self._report_stall(stalled, now)
        if self._make_client is None:
            return
        candidate, reached_at = self._candidate
        if candidate is None:
            if not self._probing and now >= self._next_probe:
                self._next_probe = now + PROBE_INTERVAL_S
                self._probing = True
                threading.Thread(target=self._probe, name="kafka-probe", daemon=True).start()
            return
        stuck = [c for c in stalled if c.progress_at <= reached_at]
        if stuck and now - reached_at >= REPLACE_GRACE_S:
            self._candidate = (None, 0.0)
            self._replace_client(candidate, stuck, now)

    def _report_stall(self, stalled: list[StreamCounts], now: float) -> None:
        """Each stalled stream's status error, and one rate-limited ERROR line for all."""
        held = 0
        with self._lock:
            for counts in stalled:
                waiting = len(counts.held_timestamps)
                held += waiting
                counts.error = (
                    f"no delivery report for {now - counts.progress_at:.0f} s with "
                    f"{waiting} messages held by the Kafka client"
                )
        self._stall_log.error(
            "No delivery report for up to %.0f s: %d messages of %d streams held by the "
            "Kafka client (e.g. %s -> %s)",
            max(now - counts.progress_at for counts in stalled),
            held,
            len(stalled),
            stalled[0].channel,
            stalled[0].topic,
        )

    def _probe(self) -> None:
        """(probe thread) A new client asks the broker for metadata; if it answers, the
        client is kept as the candidate replacement."""
        try:
            client = self._make_client()
            client.list_topics(timeout=PROBE_TIMEOUT_S)
        except Exception as e:  # out of reach: an outage, and the messages wait for it
            self._probe_log.error(
                "Kafka client stalled, and a new client cannot reach the broker either: %s", e
            )
        else:
            self._set_candidate(client)
        finally:
            self._probing = False

    def _set_candidate(self, client: Any | None) -> None:
        replaced = [self._candidate[0]]
        self._candidate = (client, self._clock())
        _discard(replaced)

    def _replace_client(self, fresh: Any, stuck: list[StreamCounts], now: float) -> None:
        """The old client's messages are purged and put back at the head of the overflow,
        in order, and the new client sends them again."""
        held = sum(len(counts.held_timestamps) for counts in stuck)
        stalled_s = max(now - counts.progress_at for counts in stuck)
        with self._lock:
            old, self._producer = self._producer, fresh
            self._rescued = []  # new messages go behind the rescued ones
        # Queued messages only: those in flight are left to finish (or fail) on the old
        # client while we wait, so none is sent twice and the new client sends after them.
        old.purge(in_queue=True, in_flight=False, blocking=False)
        deadline = time.monotonic() + RESCUE_TIMEOUT_S  # librdkafka's threads: real time
        while len(old) and time.monotonic() < deadline:
            old.poll(DRAIN_POLL_S)
        lost = 0
        with self._lock:
            rescued = _with_timestamps(self._rescued or [])
            # The new client has been given nothing yet: what librdkafka still holds of a
            # stream is what the old client never reported, lost with it.
            for counts in list(self._watched):
                for _ in range(len(counts.held_timestamps)):
                    counts.held_timestamps.popleft()
                    self._drop(counts, "lost with a replaced Kafka client")
                    lost += 1
            self._rescued = None
            newest = {id(entry[4]): entry for entry in rescued}
            for entry in newest.values():
                if entry[4].newest is None:
                    entry[4].newest = entry
            self._overflow.extendleft(reversed(rescued))
            self._overflow_bytes += sum(entry[5] for entry in rescued)
            if self._inflight + self._overflow_bytes > self._budget:
                self._evict()
        self.replacements += 1
        if self._metrics is not None:
            self._metrics.inc("producer_replacements")
        log.error(
            "Replaced the Kafka client: %d streams had no delivery report for up to %.0f s "
            "(%d messages held) while a new client reached the broker; %d messages moved to "
            "the new client in order, %d lost with the old one",
            len(stuck),
            stalled_s,
            held,
            len(rescued),
            lost,
        )
        replaced = [old]
        del old
        _discard(replaced)

    def _report_deliveries(self) -> None:
        """Add the delivery tallies since the last call to the metrics."""
        with self._lock:
            delivered, latencies, total = self._delivered, self._latencies, self._latency_sum
            self._delivered = self._latencies = 0
            self._latency_sum = 0.0
        if self._metrics is not None:
            self._metrics.inc("successful_sends", delivered)
            if latencies:
                self._metrics.observe("latency_produce_to_delivery", total, latencies)

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            try:
                self._producer.poll(DRAIN_POLL_S if self._overflow else POLL_INTERVAL_S)
                if self._delivered:
                    self._report_deliveries()
                if self._overflow:
                    self._drain()
                self._log_drops()
                self._watch_stalls()
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
        self._report_deliveries()
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
        self._report_deliveries()  # what the last polls (and close's flush) delivered
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


def _with_timestamps(rescued: list[tuple]) -> list[tuple]:
    """The purged messages of a replaced client with their Kafka timestamps, taken off their
    streams' held timestamps (lock held).

    Only queued messages are purged, so a stream's purged ones are its newest held; the
    older ones in flight report after them, which is why this waits until they have.
    """
    purged = collections.Counter(id(entry[4]) for entry in rescued)
    newest_first: dict[int, list[int]] = {}
    for entry in rescued:
        held = entry[4].held_timestamps
        if id(entry[4]) not in newest_first:
            count = min(purged[id(entry[4])], len(held))
            newest_first[id(entry[4])] = [held.pop() for _ in range(count)]
    # (0, never expected: a stream with fewer held than purged, is "now" to librdkafka)
    return [
        (*entry[:3], (newest_first[id(entry[4])] or [0]).pop(), *entry[4:]) for entry in rescued
    ]


def _discard(holder: list) -> None:
    """Destroy the client in ``holder`` (its only reference) on a thread of its own: a
    wedged client's destructor may block on librdkafka's threads."""
    if holder[0] is not None:
        threading.Thread(target=holder.clear, name="kafka-discard", daemon=True).start()
