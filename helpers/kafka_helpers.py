"""Kafka client helpers for tests (kafka-python only): topics, producing, reading, SASL configs.

Every client is built through ``_client``, which closes it again if its constructor fails
(kafka-python starts an IO thread before it bootstraps and would leak it otherwise).
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.net.compat import KafkaNetClient

from helpers.polling import wait_until

log = logging.getLogger(__name__)

_topic_numbers = itertools.count(1)


# -- configs ------------------------------------------------------------------------------


def sasl_config(mechanism: str, user: str, password: str) -> dict[str, Any]:
    """kafka-python settings for the SASL_PLAINTEXT listener with one user."""
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


def sasl_config_librdkafka(mechanism: str, user: str, password: str) -> dict[str, str]:
    """The same in confluent-kafka (librdkafka) property names."""
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def _client(cls, bootstrap: str, **config):
    """Build a kafka-python client; if bootstrapping fails, stop its IO thread and re-raise."""
    created: list[KafkaNetClient] = []

    def make_net_client(**kwargs):
        net_client = KafkaNetClient(**kwargs)
        created.append(net_client)
        return net_client

    config.setdefault("client_id", f"rig-test-{os.getpid()}")
    try:
        return cls(bootstrap_servers=bootstrap, kafka_client=make_net_client, **config)
    except BaseException:
        for net_client in created:
            try:
                net_client.close()
                net_client._manager._net.stop(timeout_ms=2000)  # no public way after a failure
            except Exception:  # noqa: BLE001 - clean-up after a failure already being raised
                log.debug("closing a failed kafka client", exc_info=True)
        raise


def admin(bootstrap: str, **config) -> KafkaAdminClient:
    """An admin client; extra ``config`` (e.g. ``sasl_config(...)``) is passed through."""
    config.setdefault("bootstrap_timeout_ms", 10_000)
    return _client(KafkaAdminClient, bootstrap, **config)


def producer(bootstrap: str, **config) -> KafkaProducer:
    config.setdefault("bootstrap_timeout_ms", 10_000)
    return _client(KafkaProducer, bootstrap, **config)


def consumer(bootstrap: str, **config) -> KafkaConsumer:
    """A consumer without a group (assign partitions yourself), reading from the start."""
    config.setdefault("bootstrap_timeout_ms", 10_000)
    config.setdefault("auto_offset_reset", "earliest")
    config.setdefault("enable_auto_commit", False)
    return _client(KafkaConsumer, bootstrap, **config)


def _port_open(bootstrap: str) -> bool:
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def broker_answers(bootstrap: str, **config) -> bool:
    """Whether a broker at ``bootstrap`` answers a metadata request right now (one try)."""
    if not _port_open(bootstrap):
        return False
    try:
        client = admin(bootstrap, bootstrap_timeout_ms=3000, request_timeout_ms=3000, **config)
    except (KafkaError, OSError) as exc:
        log.debug("broker %s not answering yet: %s", bootstrap, exc)
        return False
    try:
        client.list_topics()  # a metadata request
        return True
    except (KafkaError, OSError):
        return False
    finally:
        client.close()


# -- topics -------------------------------------------------------------------------------


def unique_topic(prefix: str = "test") -> str:
    """A topic name no other test (or earlier run against the same broker) uses."""
    return f"{prefix}-{os.getpid()}-{next(_topic_numbers)}-{uuid.uuid4().hex[:8]}"


def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 1, timeout: float = 30.0, **config
) -> list[str]:
    """Create the topics (existing ones are fine) and return once metadata lists them all."""
    names = list(names)
    client = admin(bootstrap, **config)
    try:
        for name in names:
            try:
                client.create_topics(
                    {name: {"num_partitions": partitions, "replication_factor": 1}}
                )
            except TopicAlreadyExistsError:
                pass
        missing: set[str] = set(names)

        def all_exist() -> bool:
            missing.intersection_update(set(names) - set(client.list_topics()))
            return not missing

        wait_until(
            all_exist,
            timeout=timeout,
            interval=0.1,
            what=f"topics {names} to exist",
            seen=lambda: f"missing {sorted(missing)}",
        )
    finally:
        client.close()
    return names


def produce(
    bootstrap: str,
    topic: str,
    value: bytes,
    key: bytes | None = None,
    timeout: float = 30.0,
    **config,
) -> int:
    """Send one message and wait for the broker's ack; returns its offset."""
    client = producer(bootstrap, **config)
    try:
        metadata = client.send(topic, value=value, key=key).get(timeout=timeout)
        client.flush(timeout=timeout)
        return metadata.offset
    finally:
        client.close()


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One message as read from a topic."""

    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    timestamp_type: int  # 0: create time (set by the producer), 1: log-append time
    offset: int
    partition: int = 0

    @property
    def schema_id(self) -> bytes | None:
        """The flatbuffer file identifier (bytes 4:8), e.g. b"f144"."""
        return None if self.value is None or len(self.value) < 8 else bytes(self.value[4:8])


class TopicReader:
    """Reads every partition of one topic from its beginning, without a consumer group.

    ``poll_new()`` fetches what arrived since the last call; ``records`` keeps everything.
    """

    def __init__(self, bootstrap: str, topic: str, timeout: float = 30.0, **config):
        self.topic = topic
        self.records: list[Record] = []
        self._consumer = consumer(bootstrap, **config)
        try:
            partitions = wait_until(
                lambda: self._consumer.partitions_for_topic(topic),
                timeout=timeout,
                what=f"partitions of topic {topic!r}",
            )
            assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
            self._consumer.assign(assignment)
            self._consumer.seek_to_beginning(*assignment)
        except BaseException:
            self._consumer.close()
            raise

    def poll_new(self, timeout_ms: int = 200) -> list[Record]:
        """The records that arrived since the last call (possibly none)."""
        new: list[Record] = []
        for messages in self._consumer.poll(timeout_ms=timeout_ms).values():
            for m in messages:
                new.append(
                    Record(m.key, m.value, m.timestamp, m.timestamp_type, m.offset, m.partition)
                )
        self.records.extend(new)
        return new

    def wait_for(self, predicate: Callable[[list[Record]], Any], timeout: float, what: str) -> Any:
        """Poll until ``predicate(records so far)`` is truthy; return its value.

        On timeout the error says what was awaited and what had arrived instead.
        """

        def check():
            self.poll_new()
            return predicate(self.records)

        return wait_until(
            check,
            timeout=timeout,
            what=f"{what} on topic {self.topic!r}",
            interval=0.0,
            seen=self.describe,
        )

    def wait_for_count(self, count: int, timeout: float = 30.0) -> list[Record]:
        """Wait until at least ``count`` records have been read; return all of them."""
        self.wait_for(lambda records: len(records) >= count, timeout, f"{count} records")
        return self.records

    def describe(self, last: int = 5) -> str:
        """What has been read so far: the count and schema ids of the last few values."""
        ids = [r.schema_id for r in self.records[-last:]]
        return f"{len(self.records)} records; schema ids of the last {len(ids)}: {ids}"

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_all(
    bootstrap: str, topic: str, count: int, timeout: float = 30.0, **config
) -> Sequence[Record]:
    """Read a topic from the start until ``count`` records are there."""
    began = time.monotonic()
    with TopicReader(bootstrap, topic, timeout=timeout, **config) as reader:
        return reader.wait_for_count(count, max(1.0, timeout - (time.monotonic() - began)))


def refuse_all_messages(bootstrap: str, topic: str) -> None:
    """Make the broker refuse every message to ``topic``: max.message.bytes below any f144."""
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry("max.message.bytes", "16", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)

    def applied() -> bool:
        described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
        configs = next(iter(described.values())).result(timeout=10)
        return configs["max.message.bytes"].value == "16"

    wait_until(applied, timeout=30, what=f"max.message.bytes=16 on {topic}")
