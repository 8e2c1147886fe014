"""Kafka client helpers for tests: topics, producing, reading, SASL configs.

Topics, producing and broker checks use kafka-python; every such client is built through
``_client``, which closes it again if its constructor fails (kafka-python starts an IO
thread before it bootstraps and would leak it otherwise). Topics are read with
confluent-kafka's consumer (``TopicReader``), the tests' one reader of topics.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaException,
    TopicPartition,
)
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.net.compat import KafkaNetClient

from helpers.flatbuffers_helpers import decode, describe
from helpers.polling import wait_until

log = logging.getLogger(__name__)

_topic_numbers = itertools.count(1)
READER_END_CHECK_S = 5.0  # how often a reader that reads nothing asks where the topic ends
READER_STUCK_AFTER_S = 10.0


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

# confluent-kafka's timestamp types -> Kafka's timestamp type attribute (0 create, 1 append).
_TIMESTAMP_TYPES = {TIMESTAMP_CREATE_TIME: 0, TIMESTAMP_LOG_APPEND_TIME: 1}
SEEN_RECORDS = 30  # records a timeout message describes; the rest are counted


@dataclass(frozen=True)
class Record:
    """One message as read from a topic, with its value decoded by schema id."""

    key: bytes | None
    value: bytes | None
    kafka_timestamp_ms: int
    timestamp_type: int  # 0: create time (set by the producer), 1: log-append time
    offset: int
    partition: int
    message: object  # helpers.flatbuffers_helpers.decode(value)

    @property
    def schema_id(self) -> bytes | None:
        """The flatbuffer file identifier (bytes 4:8), e.g. b"f144"."""
        return None if self.value is None or len(self.value) < 8 else bytes(self.value[4:8])


class TopicReader:
    """Every partition of one topic from its beginning, decoded, with waits.

    Read with confluent-kafka (librdkafka, which decodes the lz4 batches the forwarder
    produces) and no consumer group. The topic need not exist yet: its partitions are
    assigned at the first poll that finds them. ``poll()`` fetches what arrived since the
    last call; ``records`` keeps everything (in offset order within a partition).
    ``config`` adds librdkafka settings, e.g. ``sasl_config_librdkafka(...)``.

    An assigned librdkafka consumer can stop fetching for good after a broker restart, with
    no error (librdkafka issue 5153): a test would then blame the forwarder for records that
    are on the topic. So a reader that reads nothing while the topic's end stays past what
    it has read for 10 s starts a new consumer there (logged as a warning).
    """

    def __init__(self, bootstrap: str, topic: str, config: Mapping[str, str] | None = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.records: list[Record] = []
        self._assigned = False
        self._config = {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **(config or {}),
        }
        self._consumer = Consumer(self._config)
        self._partitions: list[int] = []
        self._next: dict[int, int] = {}  # partition -> the offset after the last record read
        self._next_end_check = 0.0
        self._behind_since: float | None = None
        self.restarts = 0

    def _assign(self) -> bool:
        """Assign every partition from its beginning once metadata lists the topic."""
        if not self._assigned:
            try:
                metadata = self._consumer.list_topics(self.topic, timeout=2.0)
            except KafkaException:  # no broker answered in time: the next poll tries again
                return False
            topic = metadata.topics.get(self.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                return False
            self._partitions = sorted(topic.partitions)
            self._consumer.assign(
                [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions]
            )
            self._assigned = True
        return True

    def _restart_if_stuck(self) -> None:
        """Between polls that read nothing: compare the topic's ends with what was read."""
        now = time.monotonic()
        if now < self._next_end_check:
            return
        self._next_end_check = now + READER_END_CHECK_S
        behind = False
        for partition in self._partitions:
            try:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=1.0, cached=False
                )
            except KafkaException:
                return  # out of reach: nothing to tell
            behind = behind or high > self._next.get(partition, low)
        if not behind:
            self._behind_since = None
        elif self._behind_since is None:
            self._behind_since = now
        elif now - self._behind_since >= READER_STUCK_AFTER_S:
            log.warning(
                "Reader of %s read nothing for %.0f s while the topic had more; its consumer "
                "stopped fetching (librdkafka issue 5153): a new one reads on from %s",
                self.topic,
                now - self._behind_since,
                self._next,
            )
            old, self._consumer = self._consumer, Consumer(self._config)
            self._consumer.assign(
                [
                    TopicPartition(self.topic, p, self._next.get(p, OFFSET_BEGINNING))
                    for p in self._partitions
                ]
            )
            self._behind_since = None
            self.restarts += 1
            old.close()

    def poll(self, timeout_ms: int = 100) -> list[Record]:
        """The records that arrived since the last call (possibly none)."""
        if not self._assign():
            return []
        new = []
        for m in self._consumer.consume(num_messages=1000, timeout=timeout_ms / 1000):
            if m.error() is not None:
                continue  # transient (e.g. partition not ready yet); the next poll retries
            timestamp_type, timestamp_ms = m.timestamp()
            new.append(
                Record(
                    m.key(),
                    m.value(),
                    timestamp_ms,
                    _TIMESTAMP_TYPES.get(timestamp_type, -1),
                    m.offset(),
                    m.partition(),
                    decode(m.value()),
                )
            )
        new.sort(key=lambda r: (r.partition, r.offset))
        self.records.extend(new)
        for record in new:
            self._next[record.partition] = record.offset + 1
        if new:
            self._behind_since = None
        else:
            self._restart_if_stuck()
        return new

    def mark(self) -> int:
        """Index of the next record; pass to ``messages(since=...)`` to see only later ones."""
        self.poll(timeout_ms=0)
        return len(self.records)

    def messages(
        self, schema: str | None = None, source: str | None = None, since: int = 0
    ) -> list:
        """The decoded messages of ``schema`` from ``source`` (None: any), from ``since`` on."""
        out = []
        for record in self.records[since:]:
            m = record.message
            if schema is not None and getattr(m, "schema", None) != schema:
                continue
            if source is not None and getattr(m, "source", None) != source:
                continue
            out.append(m)
        return out

    def wait_for(self, condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
        """Poll the topic until ``condition()`` (which looks at this reader) is truthy; return
        its value. On timeout the error says what was awaited and what had arrived instead."""

        def check():
            self.poll(timeout_ms=50)
            return condition()

        return wait_until(
            check, timeout=timeout, what=f"{what} on {self.topic}", seen=self.seen, interval=0.0
        )

    def wait_for_count(
        self,
        count: int,
        *,
        schema: str | None = None,
        source: str | None = None,
        since: int = 0,
        timeout: float = 15.0,
        what: str | None = None,
    ) -> list:
        """Wait until at least ``count`` matching messages arrived; return all matching."""
        label = what or f"{count} {schema or 'any'} message(s) from {source or 'any source'}"

        def enough():
            found = self.messages(schema, source, since)
            return found if len(found) >= count else None

        return self.wait_for(enough, timeout=timeout, what=label)

    def wait_for_message(
        self,
        predicate: Callable[[object], bool],
        *,
        since: int = 0,
        timeout: float = 15.0,
        what: str,
    ):
        """Wait for the first message (from index ``since``) satisfying ``predicate``."""

        def first():
            for record in self.records[since:]:
                if predicate(record.message):
                    return record.message
            return None

        return self.wait_for(first, timeout=timeout, what=what)

    def seen(self) -> str:
        """What has been read so far, described (the first and last few if many)."""
        lines = [describe(r.message) for r in self.records]
        if len(lines) > SEEN_RECORDS:
            half = SEEN_RECORDS // 3
            lines = lines[:half] + [f"... {len(lines) - 2 * half} more ..."] + lines[-half:]
        return f"{len(self.records)} records: " + "; ".join(lines)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_all(
    bootstrap: str,
    topic: str,
    count: int,
    timeout: float = 30.0,
    config: Mapping[str, str] | None = None,
) -> list[Record]:
    """Read a topic from the start until ``count`` records are there; return them all."""
    with TopicReader(bootstrap, topic, config) as reader:
        reader.wait_for(
            lambda: len(reader.records) >= count, timeout=timeout, what=f"{count} records"
        )
        return reader.records


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
