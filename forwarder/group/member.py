"""Membership of a forwarder group, through a Kafka consumer group on a coordination topic.

The coordination topic carries no messages: its partitions are tokens. Kafka's group
protocol (librdkafka, classic protocol with the cooperative-sticky assignor) hands each
partition to exactly one live member; a rebalance moves only the partitions that change
owner. The broker drops a member that stops heartbeating for ``SESSION_TIMEOUT_MS``, so a
killed member's streams resume on the survivors within that plus one heartbeat and one
rebalance. (KIP-848's ``group.protocol=consumer`` would work too, but its session timeout is
a broker setting with a 45 s minimum by default, too slow a failover.)

One thread polls the consumer, which keeps the membership alive and runs the assignment
callbacks; those start and stop streams through ``OwnedStreams``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import confluent_kafka
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

from forwarder.group.names import coordination_topic, group_id
from forwarder.group.ownership import OwnedStreams
from forwarder.kafka.client_log import FatalErrorHandler, client_logging

log = logging.getLogger(__name__)

PARTITIONS = 64
SESSION_TIMEOUT_MS = 6000  # the broker's group.min.session.timeout.ms default
HEARTBEAT_INTERVAL_MS = 1000
POLL_TIMEOUT_S = 0.5
SETUP_RETRY_S = 2.0
STORAGE_PARTITION = 0  # its owner is the one member that writes the storage topic


def member_config(
    kafka_config: dict[str, str],
    config_topic: str,
    group: str,
    on_fatal: FatalErrorHandler | None = None,
) -> dict:
    return {
        **kafka_config,
        "group.id": group_id(config_topic, group),
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        **client_logging("group", on_fatal),
    }


class GroupMember:
    """Joins the group, keeps polling, and applies assignments to ``owned``."""

    def __init__(
        self,
        kafka_config: dict[str, str],
        config_topic: str,
        group: str,
        owned: OwnedStreams,
        *,
        on_change: Callable[[], None] = lambda: None,
        on_fatal: FatalErrorHandler | None = None,
        consumer_factory=confluent_kafka.Consumer,
        admin_factory=AdminClient,
    ):
        self.group = group
        self.topic = coordination_topic(config_topic, group)
        self._kafka_config = kafka_config
        self._config = member_config(kafka_config, config_topic, group, on_fatal)
        self._owned = owned
        self.on_change = on_change  # called on its thread after each assignment change
        self._consumer_factory = consumer_factory
        self._admin_factory = admin_factory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._member_id = ""
        self._lock = threading.Lock()

    @property
    def member_id(self) -> str:
        with self._lock:
            return self._member_id

    def writes_storage(self) -> bool:
        """True while this member owns the partition whose owner writes the storage topic."""
        return STORAGE_PARTITION in self._owned.owned_partitions()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="group-member", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Leave the group (its streams move to the others at once) and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("The group member thread did not stop within %.0fs", timeout)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        consumer = None
        try:
            while not self._stop.is_set():
                try:
                    consumer = self._join()
                    break
                except Exception as error:
                    log.warning(
                        "Cannot join forwarder group %s on %s yet (%s); retrying",
                        self.group,
                        self.topic,
                        error,
                    )
                    self._stop.wait(SETUP_RETRY_S)
            while consumer is not None and not self._stop.is_set():
                try:
                    message = consumer.poll(POLL_TIMEOUT_S)
                except Exception:
                    log.exception("Polling the group's coordination topic failed; carrying on")
                    self._stop.wait(POLL_TIMEOUT_S)
                    continue
                if message is not None and message.error() is not None:
                    log.warning("Forwarder group %s: %s", self.group, message.error())
                self._note_member_id(consumer)
        finally:
            if consumer is not None:
                try:
                    consumer.close()  # revokes (stops) our streams and leaves the group
                except Exception:
                    log.exception("Leaving forwarder group %s failed", self.group)

    def _join(self):
        partitions = self._ensure_topic()
        self._owned.set_partition_count(partitions)
        consumer = self._consumer_factory(self._config)
        consumer.subscribe(
            [self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )
        log.info(
            "Joining forwarder group %s (Kafka group %s, %d partitions of %s, session timeout "
            "%d ms)",
            self.group,
            self._config["group.id"],
            partitions,
            self.topic,
            SESSION_TIMEOUT_MS,
        )
        return consumer

    def _ensure_topic(self) -> int:
        """The coordination topic's partition count, creating the topic if it is missing.

        Created before anything asks for its metadata: a metadata request for a missing
        topic makes a broker with auto.create.topics.enable create it with 1 partition.
        """
        admin = self._admin_factory(dict(self._kafka_config))
        futures = admin.create_topics([NewTopic(self.topic, num_partitions=PARTITIONS)])
        try:
            futures[self.topic].result(timeout=10)
            log.info("Created coordination topic %s (%d partitions)", self.topic, PARTITIONS)
        except confluent_kafka.KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        metadata = admin.list_topics(self.topic, timeout=10)
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            raise RuntimeError(f"coordination topic {self.topic} has no partitions yet")
        if len(found.partitions) != PARTITIONS:
            log.warning(
                "Coordination topic %s has %d partitions (forwarders make it with %d); "
                "using them as they are",
                self.topic,
                len(found.partitions),
                PARTITIONS,
            )
        return len(found.partitions)

    def _note_member_id(self, consumer) -> None:
        try:
            member_id = consumer.memberid() or ""
        except Exception:
            return
        with self._lock:
            self._member_id = member_id

    # -- assignment callbacks (on this thread, inside poll) ------------------------------

    def _assigned(self, consumer, partitions) -> None:
        ids = [tp.partition for tp in partitions]
        try:
            started = self._owned.assign(ids)
        except Exception:
            log.exception("Starting the streams of partitions %s failed", _short(ids))
            started = -1
        self._note_member_id(consumer)
        log.info(
            "Group %s assigned %d partitions %s: started %d streams; %d partitions owned",
            self.group,
            len(ids),
            _short(ids),
            started,
            len(self._owned.owned_partitions()),
        )
        self.on_change()

    def _revoked(self, consumer, partitions) -> None:
        ids = [tp.partition for tp in partitions]
        stopped = self._revoke(ids)
        log.info(
            "Group %s revoked %d partitions %s: stopped %d streams",
            self.group,
            len(ids),
            _short(ids),
            stopped,
        )
        self.on_change()

    def _lost(self, consumer, partitions) -> None:
        ids = [tp.partition for tp in partitions]
        stopped = self._revoke(ids)
        log.warning(
            "Group %s: lost %d partitions %s (this member's session expired): stopped %d "
            "streams; they run on other members",
            self.group,
            len(ids),
            _short(ids),
            stopped,
        )
        self.on_change()

    def _revoke(self, ids: list[int]) -> int:
        try:
            return self._owned.revoke(ids)
        except Exception:
            log.exception("Stopping the streams of partitions %s failed", _short(ids))
            return -1


def _short(ids: list[int]) -> str:
    ids = sorted(ids)
    return str(ids) if len(ids) <= 16 else f"{ids[:16]}…"


