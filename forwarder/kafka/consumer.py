"""Reading Kafka for the control plane: the config topic (live) and the storage topic (once).

The config topic is assigned explicitly at its end offsets, so a command produced after we
are assigned is never missed and old commands are never replayed; no consumer group offsets
are used or committed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import confluent_kafka
from confluent_kafka import KafkaError, TopicPartition

from forwarder.config.storage import StoredMessage
from forwarder.kafka.client_log import AuthFailureHandler, client_logging

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[dict], object]


def consumer_config(
    kafka_config: dict[str, str], role: str, on_auth_failure: AuthFailureHandler | None = None
) -> dict:
    """A consumer configuration that never joins a group's offsets and logs errors."""
    config = dict(kafka_config)
    config.update(
        {
            "group.id": f"forwarder-{role}-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            **client_logging(role, on_auth_failure),
        }
    )
    return config


def _partitions(consumer, topic: str, timeout: float) -> list[int] | None:
    """Partition ids of ``topic``; None (logged at DEBUG) if it does not exist (yet)."""
    metadata = consumer.list_topics(topic, timeout=timeout)
    topic_metadata = metadata.topics.get(topic)
    if topic_metadata is None or topic_metadata.error is not None:
        reason = topic_metadata.error if topic_metadata is not None else "not in metadata"
        log.debug("Topic %s unavailable: %s", topic, reason)
        return None
    if not topic_metadata.partitions:
        return None
    return sorted(topic_metadata.partitions)


class ConfigConsumer:
    """Delivers fc00 payloads from the config topic, from the moment it got assigned."""

    def __init__(
        self,
        kafka_config: dict[str, str],
        topic: str,
        *,
        consumer_factory: ConsumerFactory = confluent_kafka.Consumer,
        retry_interval_s: float = 1.0,
        clock=time.monotonic,
        on_auth_failure: AuthFailureHandler | None = None,
    ):
        self._topic = topic
        self._consumer = consumer_factory(
            consumer_config(kafka_config, "config-topic", on_auth_failure)
        )
        self._retry_interval_s = retry_interval_s
        self._clock = clock
        self._next_try = 0.0
        self._warned = False
        self.assigned = False

    def try_assign(self, timeout: float = 5.0) -> bool:
        """Assign all partitions at their end offsets; False (and retry later) if impossible."""
        if self.assigned:
            return True
        now = self._clock()
        if now < self._next_try:
            return False
        self._next_try = now + self._retry_interval_s
        try:
            partitions = _partitions(self._consumer, self._topic, timeout)
            if partitions is None:
                self._warn(f"config topic {self._topic} does not exist yet; retrying")
                return False
            assignment = []
            for partition in partitions:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, partition), timeout=timeout, cached=False
                )
                assignment.append(TopicPartition(self._topic, partition, high))
            self._consumer.assign(assignment)
        except confluent_kafka.KafkaException as error:
            self._warn(f"cannot reach config topic {self._topic} yet ({error}); retrying")
            return False
        self.assigned = True
        log.info(
            "Listening for commands on %s from offsets %s",
            self._topic,
            {tp.partition: tp.offset for tp in assignment},
        )
        return True

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
            payloads.append(message.value())
        return payloads

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception:
            log.exception("Closing the config consumer failed")


class KafkaTopicReader:
    """Random access to a topic, for walking back through the storage topic."""

    def __init__(
        self,
        kafka_config: dict[str, str],
        topic: str,
        *,
        consumer_factory: ConsumerFactory = confluent_kafka.Consumer,
        on_auth_failure: AuthFailureHandler | None = None,
    ):
        self._topic = topic
        self._consumer = consumer_factory(
            consumer_config(kafka_config, "storage-topic", on_auth_failure)
        )

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
            log.warning("Cannot read storage topic %s: %s", self._topic, error)
            return None

    def read(self, partition: int, start: int, end: int, deadline: float) -> list[StoredMessage]:
        self._consumer.assign([TopicPartition(self._topic, partition, start)])
        messages: dict[int, StoredMessage] = {}
        while time.monotonic() < deadline:
            timeout = max(0.0, min(0.5, deadline - time.monotonic()))
            for message in self._consumer.consume(num_messages=end - start, timeout=timeout):
                if message.error() is None and start <= message.offset() < end:
                    _type, timestamp = message.timestamp()
                    offset = message.offset()
                    messages[offset] = StoredMessage(offset, message.value(), timestamp)
            # The position passes offsets that were compacted away, so gaps do not stall us.
            position = self._consumer.position([TopicPartition(self._topic, partition)])
            if len(messages) >= end - start or position[0].offset >= end:
                break
        return list(messages.values())

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception:
            log.exception("Closing the storage consumer failed")
