"""Reading Kafka for the control plane: the config topic (live) and the storage topic (once).

The config topic is assigned explicitly, with no consumer group offsets used or committed,
from the first command written after this forwarder started: commands sent while the broker
was still out of reach, or while the stored configuration was being restored, are applied,
and commands older than this run are never replayed. A config topic that did not exist yet
at start is read from its beginning, since everything in it was written after we started.

An assigned librdkafka consumer can stop fetching for good after a broker restart, with no
error (librdkafka issue 5153; seen here on 2.16 in the suite's own readers). Commands would
then be lost without a word, so while nothing arrives the consumer asks the broker for the
topic's end every few seconds; one that has left commands unread for 10 s while being polled
is replaced by a new one that reads on from the next unread offset. (The ask is made between
polls: librdkafka answers it only late, if at all, while the same client is in ``consume``.)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import confluent_kafka
from confluent_kafka import KafkaError, TopicPartition

from forwarder.config.storage import StorageUnavailable, StoredMessage
from forwarder.kafka.client_log import FatalErrorHandler, client_logging

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[dict], object]

END_CHECK_S = 5.0  # how often an idle consumer asks the broker where the config topic ends
END_TIMEOUT_S = 1.0  # the longest that ask may hold up the forwarder's loop (in an outage)
STUCK_AFTER_S = 10.0  # a healthy consumer fetches what is there within a second
MAX_STUCK_AFTER_S = 300.0


def consumer_config(
    kafka_config: dict[str, str], role: str, on_fatal: FatalErrorHandler | None = None
) -> dict:
    """A consumer configuration that never joins a group's offsets and logs errors."""
    config = dict(kafka_config)
    config.update(
        {
            "group.id": f"forwarder-{role}-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            **client_logging(role, on_fatal),
        }
    )
    return config


def _partitions(consumer, topic: str, timeout: float) -> list[int] | None:
    """Partition ids of ``topic``; None if the broker says it does not exist.

    Raises KafkaException when the broker cannot be asked, or answers with another error
    (e.g. no leader yet while it starts): only "unknown topic" means absent."""
    metadata = consumer.list_topics(topic, timeout=timeout)
    topic_metadata = metadata.topics.get(topic)
    if topic_metadata is None:
        return None
    error = topic_metadata.error
    if error is not None:
        if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            log.debug("Topic %s does not exist: %s", topic, error)
            return None
        raise confluent_kafka.KafkaException(error)
    if not topic_metadata.partitions:
        return None
    return sorted(topic_metadata.partitions)


class ConfigConsumer:
    """Delivers fc00 payloads from the config topic: every command written since ``started_ms``
    (the forwarder's start, by the producers' record timestamps), or all of them if the topic
    was seen not to exist."""

    def __init__(
        self,
        kafka_config: dict[str, str],
        topic: str,
        *,
        consumer_factory: ConsumerFactory = confluent_kafka.Consumer,
        retry_interval_s: float = 1.0,
        clock=time.monotonic,
        on_fatal: FatalErrorHandler | None = None,
        started_ms: int | None = None,
        end_check_s: float = END_CHECK_S,
    ):
        self._topic = topic
        self._factory = consumer_factory
        self._config = consumer_config(kafka_config, "config-topic", on_fatal)
        self._consumer = consumer_factory(self._config)
        self._retry_interval_s = retry_interval_s
        self._clock = clock
        self._started_ms = started_ms if started_ms is not None else int(time.time() * 1000)
        self._from_beginning = False  # set once the topic was seen not to exist
        self._next_try = 0.0
        self._warned = False
        self.assigned = False
        # The stuck-consumer watch: our own next offset per partition (librdkafka's position
        # is unset until a first message), the topic's ends as last asked, and since when
        # commands have sat unread.
        self._next: dict[int, int] = {}
        self._ends: dict[int, int] = {}
        self._unread_since: float | None = None
        self._stuck_after_s = STUCK_AFTER_S
        self._end_check_s = end_check_s
        self._next_end_check = 0.0
        self.replacements = 0

    def replay_since(self, timestamp_ms: int) -> None:
        """Also deliver the commands written since ``timestamp_ms`` (before the first
        assignment only): a group member replays those newer than its restored snapshot."""
        if not self.assigned:
            self._started_ms = min(self._started_ms, timestamp_ms)

    def try_assign(self, timeout: float = 5.0) -> bool:
        """Assign every partition at the first command of this run; False (retry later) if
        the topic cannot be read yet."""
        if self.assigned:
            return True
        now = self._clock()
        if now < self._next_try:
            return False
        self._next_try = now + self._retry_interval_s
        try:
            partitions = _partitions(self._consumer, self._topic, timeout)
            if partitions is None:
                self._from_beginning = True
                self._warn(f"config topic {self._topic} does not exist yet; retrying")
                return False
            assignment = [
                TopicPartition(self._topic, p, self._first_offset(p, timeout)) for p in partitions
            ]
            self._consumer.assign(assignment)
        except confluent_kafka.KafkaException as error:
            self._warn(f"cannot reach config topic {self._topic} yet ({error}); retrying")
            return False
        self.assigned = True
        self._next = {tp.partition: tp.offset for tp in assignment}
        log.info(
            "Listening for commands on %s from offsets %s (%s)",
            self._topic,
            {tp.partition: tp.offset for tp in assignment},
            "the topic is new: every command in it"
            if self._from_beginning
            else f"every command written since {self._started_ms} ms",
        )
        return True

    def _first_offset(self, partition: int, timeout: float) -> int:
        low, high = self._consumer.get_watermark_offsets(
            TopicPartition(self._topic, partition), timeout=timeout, cached=False
        )
        if self._from_beginning:
            return low
        (found,) = self._consumer.offsets_for_times(
            [TopicPartition(self._topic, partition, self._started_ms)], timeout=timeout
        )
        if found.error is not None:
            raise confluent_kafka.KafkaException(found.error)
        # -1: no record at or after the start time, so the first command will come at high.
        return high if found.offset < 0 else found.offset

    def _warn(self, text: str) -> None:
        (log.debug if self._warned else log.warning)(text[0].upper() + text[1:])
        self._warned = True

    def poll(self, timeout: float) -> list[bytes | None]:
        """Payloads that arrived within ``timeout`` seconds (possibly none)."""
        payloads = []
        for message in self._consumer.consume(num_messages=100, timeout=timeout):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("Error reading config topic %s: %s", self._topic, error)
                continue
            self._next[message.partition()] = message.offset() + 1
            payloads.append(message.value())
        if payloads:
            self._unread_since = None
            self._stuck_after_s = STUCK_AFTER_S
        elif self.assigned:
            now = self._clock()
            if now >= self._next_end_check:
                self._next_end_check = now + self._end_check_s
                self.refresh_ends()
            self._watch_unread(now)
        return payloads

    def refresh_ends(self) -> None:
        """Ask the broker where each assigned partition ends (an outage leaves the last)."""
        ends = {}
        try:
            for partition in self._next:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, partition), timeout=END_TIMEOUT_S, cached=False
                )
                ends[partition] = high
        except confluent_kafka.KafkaException:  # out of reach: ask again later
            return
        self._ends = ends

    def _watch_unread(self, now: float) -> None:
        """Replace a consumer that leaves commands unread (see the module docstring)."""
        # The ends were asked for the partitions in _next, so each has its next offset.
        unread = {p: end - self._next[p] for p, end in self._ends.items() if end > self._next[p]}
        if not unread:
            self._unread_since = None
            return
        if self._unread_since is None:
            self._unread_since = now
        elif now - self._unread_since >= self._stuck_after_s:
            self._replace(unread, now - self._unread_since)

    def _replace(self, unread: dict[int, int], for_s: float) -> None:
        old = self._consumer
        fresh = self._factory(self._config)
        fresh.assign([TopicPartition(self._topic, p, offset) for p, offset in self._next.items()])
        self._consumer = fresh
        self._unread_since = None
        self._ends = {}
        self.replacements += 1
        log.error(
            "The config consumer read nothing for %.0f s while %d commands waited on %s; "
            "replaced it with a new one reading on from offsets %s",
            for_s,
            sum(unread.values()),
            self._topic,
            dict(self._next),
        )
        # Should the new one read nothing either (the topic's end past records a consumer
        # never returns, e.g. transaction markers), the next try waits twice as long.
        self._stuck_after_s = min(self._stuck_after_s * 2, MAX_STUCK_AFTER_S)
        _close_in_background(old)

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception:
            log.exception("Closing the config consumer failed")


def _close_in_background(consumer) -> None:
    """Close a replaced consumer on a thread of its own: a stuck one's close may block on
    librdkafka's threads."""

    def close() -> None:
        try:
            consumer.close()
        except Exception:
            log.debug("Closing a replaced consumer failed", exc_info=True)

    threading.Thread(target=close, name="kafka-discard", daemon=True).start()


class KafkaTopicReader:
    """Random access to a topic, for reading back the storage topic."""

    def __init__(
        self,
        kafka_config: dict[str, str],
        topic: str,
        *,
        consumer_factory: ConsumerFactory = confluent_kafka.Consumer,
        on_fatal: FatalErrorHandler | None = None,
    ):
        self._topic = topic
        self._factory = consumer_factory
        self._config = consumer_config(kafka_config, "storage-topic", on_fatal)
        self._consumer = consumer_factory(self._config)

    def partitions(self, timeout: float) -> dict[int, tuple[int, int]] | None:
        try:
            ids = _partitions(self._consumer, self._topic, timeout)
            if ids is None:
                return None
            return {
                p: tuple(
                    self._consumer.get_watermark_offsets(
                        TopicPartition(self._topic, p), timeout=timeout, cached=False
                    )
                )
                for p in ids
            }
        except confluent_kafka.KafkaException as error:
            raise StorageUnavailable(f"cannot read storage topic {self._topic}: {error}") from None

    def read(self, partition: int, start: int, end: int, deadline: float) -> list[StoredMessage]:
        self._consumer.assign([TopicPartition(self._topic, partition, start)])
        messages: dict[int, StoredMessage] = {}
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                # The next attempt gets a new consumer: this one may have stopped fetching
                # for good (librdkafka issue 5153, see the module docstring).
                old, self._consumer = self._consumer, self._factory(self._config)
                _close_in_background(old)
                raise StorageUnavailable(
                    f"reading storage topic {self._topic}[{partition}] offsets {start}-{end} "
                    f"timed out with {len(messages)} messages read"
                )
            batch = max(1, min(10_000, end - start - len(messages)))
            for message in self._consumer.consume(num_messages=batch, timeout=min(0.5, left)):
                if message.error() is None and start <= message.offset() < end:
                    _type, timestamp = message.timestamp()
                    offset = message.offset()
                    messages[offset] = StoredMessage(
                        offset, message.value(), timestamp, tuple(message.headers() or ())
                    )
            if len(messages) >= end - start:
                break
            # The position passes offsets that were compacted away, so gaps do not stall us.
            position = self._consumer.position([TopicPartition(self._topic, partition)])
            if position[0].offset >= end:
                break
        return list(messages.values())

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception:
            log.exception("Closing the storage consumer failed")
