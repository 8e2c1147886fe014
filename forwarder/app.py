"""The forwarder's control loop, and the composition root that builds the parts it runs over.

The main thread only does control work (config commands, status, storage); data flows from
the EPICS libraries' threads through the stream manager to the producer without touching it.
Signals, the exit watchdog and metrics export belong to the process (forwarder.lifecycle).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forwarder.config.commands import Command, CommandKind, ConfigController, Streams
from forwarder.config.storage import (
    ConfigStorage,
    StorageUnavailable,
    TopicReader,
    retrieve_snapshot,
)
from forwarder.settings import Settings
from forwarder.sink import MessageSink
from forwarder.status.reporter import StatusReporter

if TYPE_CHECKING:  # the real parts import confluent_kafka and the EPICS libraries; build_parts
    # imports them only when it runs
    from forwarder.group.member import GroupMember
    from forwarder.kafka.consumer import ConfigConsumer
    from forwarder.kafka.producer import Producer
    from forwarder.manager import StreamManager
    from forwarder.metrics import Metrics
    from forwarder.sources.base import SourceFactory

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 0.2
ASSIGN_TIMEOUT_S = 2.0
RETRIEVAL_TIMEOUT_S = 30.0  # one attempt; an unreachable broker means another attempt later
RESTORE_FIRST_RETRY_S = 0.5
RESTORE_MAX_RETRY_S = 10.0
RESTORE_LOG_INTERVAL_S = 10.0
# A group member also replays the commands written from this long before its snapshot: the
# snapshot's writer may have stored it that much after a command others applied (a dead
# writer's streams and storage move after the session timeout), and clocks may differ.
# Replaying a command already in the snapshot changes nothing.
REPLAY_BEFORE_SNAPSHOT_MS = 60_000
FLUSH_TIMEOUT_S = 5.0


@dataclass
class Parts:
    """Everything the forwarder runs; made by ``build_parts`` (or by tests, as fakes)."""

    metrics: Metrics
    output_producer: Producer
    status_sink: MessageSink
    storage_sink: MessageSink | None
    source_factories: dict[str, SourceFactory]
    manager: StreamManager
    config_consumer: ConfigConsumer
    storage_reader: TopicReader | None = None
    extra_producers: list[Producer] = field(default_factory=list)
    # With --group: the configured set over the manager (OwnedStreams) and the membership.
    owned_streams: Streams | None = None
    group_member: GroupMember | None = None


class StopRequest:
    """Whether and why the forwarder should stop; set from signal handlers and Kafka threads.

    A ``fail`` (e.g. a wrong Kafka password) stops it like a signal but makes the exit code
    non-zero, so a misconfigured forwarder ends visibly instead of retrying forever.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.failure: str | None = None
        self._lock = threading.Lock()

    def fail(self, reason: str) -> None:
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = reason
        if first:
            log.critical("Stopping the forwarder: %s", reason)
        self.event.set()


def build_parts(settings: Settings, on_fatal: Callable[[str], None]) -> Parts:
    """The real parts: Kafka producers and consumers, EPICS source factories, the manager."""
    from forwarder.kafka.client_log import client_logging
    from forwarder.kafka.consumer import ConfigConsumer, KafkaTopicReader
    from forwarder.kafka.producer import Producer
    from forwarder.manager import StreamManager
    from forwarder.metrics import Metrics
    from forwarder.sources import make_source_factories

    metrics = Metrics()

    def producer(config: dict, role: str, producer_metrics, **kwargs) -> Producer:
        return Producer(
            {**config, **client_logging(role, on_fatal)}, producer_metrics, **kwargs
        )

    output = producer(
        settings.output_kafka,
        "output-broker",
        metrics,
        buffer_bytes=settings.producer_buffer_mb * 1024 * 1024,
    )
    # Status and storage traffic is not forwarded data: no metrics. Its failures show in
    # status (storage: written/failed/error) and in ERROR lines.
    status = producer(settings.status_kafka, "status-topic", None)
    extra = [status]
    storage = reader = None
    if settings.storage_topic:
        storage = producer(settings.storage_kafka, "storage-topic", None)
        extra.append(storage)
        if not settings.skip_retrieval:
            reader = KafkaTopicReader(
                settings.storage_kafka, settings.storage_topic, on_fatal=on_fatal
            )
    factories = make_source_factories(settings.fake_pv_period_ms, metrics, settings.pva_queue_size)
    manager = StreamManager(
        output,
        factories,
        service_id=settings.service_id,
        pv_update_period_ms=settings.pv_update_period_ms,
        metrics=metrics,
    )
    consumer = ConfigConsumer(
        settings.config_kafka, settings.config_topic, on_fatal=on_fatal
    )
    parts = Parts(metrics, output, status, storage, factories, manager, consumer, reader, extra)
    if settings.group:
        from forwarder.group.member import PARTITIONS, GroupMember
        from forwarder.group.ownership import OwnedStreams

        parts.owned_streams = OwnedStreams(manager, PARTITIONS)
        parts.group_member = GroupMember(
            settings.config_kafka,
            settings.config_topic,
            settings.group,
            parts.owned_streams,
            on_fatal=on_fatal,
        )
    return parts


class Forwarder:
    """The control loop over already-built parts."""

    def __init__(self, settings: Settings, parts: Parts, request: StopRequest | None = None):
        self.settings = settings
        self.parts = parts
        self.request = request or StopRequest()
        self.stop = self.request.event
        self.member = parts.group_member
        # A group member's controller keeps the whole configuration; the manager runs the
        # streams this member owns, and status lists those.
        self.controller = ConfigController(parts.owned_streams or parts.manager)
        self.storage: ConfigStorage | None = None
        if settings.storage_topic and parts.storage_sink is not None:
            self.storage = ConfigStorage(parts.storage_sink, settings.storage_topic)
            self.controller.add_listener(self._store)
        # A group member lists the streams it runs, not the whole configuration.
        listed = self.controller.specs if self.member is None else parts.manager.specs
        self.status = StatusReporter(
            parts.status_sink,
            settings.status_topic,
            settings.service_id,
            listed,
            stream_state=getattr(parts.manager, "stream_state", None),
            extra=self._extra_status,
        )
        if self.member is None:
            self.controller.add_listener(self.status)
        else:
            self.controller.add_listener(lambda _configured: self.status.send())
        self._group_changed = threading.Event()
        self._wrote_storage_as_owner = False
        if self.member is not None:
            self.member.on_change = self._group_changed.set

    def _store(self, specs) -> None:
        """Write the configuration to storage; in a group only its storage owner writes."""
        if self.storage is None:
            return
        if self.member is not None and not self.member.writes_storage():
            return
        self.storage(specs)

    def _extra_status(self) -> dict:
        """Top-level status keys beside the streams: the storage topic's health, and a group
        member's identity."""
        extra: dict[str, object] = {}
        if self.storage is not None:
            extra["storage"] = self.storage.state()
        if self.member is not None:
            extra.update(group=self.member.group, member_id=self.member.member_id)
        return extra

    def _after_rebalance(self) -> None:
        """Report the new set of owned streams; a member that has just become the storage
        owner writes a snapshot at once, so a command applied while nobody owned storage
        (a dead owner's session not yet expired) still reaches the storage topic."""
        if self.member is None or not self._group_changed.is_set():
            return
        self._group_changed.clear()
        owner = self.member.writes_storage()
        if owner and not self._wrote_storage_as_owner and self.storage is not None:
            self.storage(self.controller.specs())
        self._wrote_storage_as_owner = owner
        self.status.send()


    def restore(self) -> bool:
        """Apply the newest stored configuration (unless --skip-retrieval); True when done.

        Nothing is forwarded and nothing written to the storage topic before this has read
        the topic, or found it empty or absent: starting empty while the broker is out of
        reach would make the next command overwrite the stored configuration. So an
        unreachable broker means another attempt, with backoff, until a stop is requested.
        """
        reader = self.parts.storage_reader
        if reader is None:
            return True
        attempt = 0
        next_log = float("-inf")
        try:
            while not self.stop.is_set():
                attempt += 1
                try:
                    stored = retrieve_snapshot(
                        reader, self.settings.storage_topic, RETRIEVAL_TIMEOUT_S
                    )
                except Exception as error:
                    retry_s = min(RESTORE_MAX_RETRY_S, RESTORE_FIRST_RETRY_S * 2 ** (attempt - 1))
                    if time.monotonic() >= next_log:
                        next_log = time.monotonic() + RESTORE_LOG_INTERVAL_S
                        unexpected = not isinstance(error, StorageUnavailable)
                        log.log(
                            logging.ERROR if unexpected else logging.WARNING,
                            "Cannot restore the configuration from storage topic %s yet "
                            "(attempt %d: %s); nothing is forwarded until it is restored; "
                            "retrying",
                            self.settings.storage_topic,
                            attempt,
                            error,
                            exc_info=unexpected,
                        )
                    self._count("storage_restore_retries")
                    self.stop.wait(retry_s)
                    continue
                specs = stored.specs
                if self.member is not None and stored.timestamp_ms is not None:
                    # Commands that others applied after the snapshot was written, or
                    # before its writer stored them, would be missed by this member alone.
                    self.parts.config_consumer.replay_since(
                        stored.timestamp_ms - REPLAY_BEFORE_SNAPSHOT_MS
                    )
                if specs:
                    # Status waits for the config consumer; storage gets the restored config
                    # again so that the newest stored snapshot always reflects this run.
                    self.controller.apply(Command(CommandKind.ADD, specs=tuple(specs)), notify=False)
                    if self.storage is not None and self.member is None:
                        self.storage(self.controller.specs())
                return True
            return False
        finally:
            _quietly(reader, "close")

    def step(self) -> None:
        """One pass of the loop; never raises, and one bad message never costs the others."""
        try:
            consumer = self.parts.config_consumer
            if not consumer.assigned and not consumer.try_assign(ASSIGN_TIMEOUT_S):
                self.stop.wait(POLL_TIMEOUT_S)
                return
            payloads = consumer.poll(POLL_TIMEOUT_S)
        except Exception:
            self._loop_error("reading the config topic")
            return
        for payload in payloads:
            try:
                accepted = self.controller.handle_message(payload)
                self._count("config_commands_accepted" if accepted else "config_commands_rejected")
            except Exception:
                self._loop_error("handling a config message")
        try:
            self._after_rebalance()
            self.status.tick()
        except Exception:
            self._loop_error("sending status")

    def _loop_error(self, doing: str) -> None:
        log.exception("Error %s; carrying on", doing)
        self._count("main_loop_errors")
        self.stop.wait(POLL_TIMEOUT_S)

    def _count(self, name: str) -> None:
        try:
            self.parts.metrics.inc(name)
        except Exception:
            log.exception("Could not count %s", name)

    def run(self) -> None:
        if not self.restore():
            return
        if self.member is not None:
            # Only now, knowing the whole configuration, may this member take streams.
            self.member.start()
        log.info("Forwarder %s running", self.settings.service_id)
        while not self.stop.is_set():
            self.step()

    def shutdown(self) -> None:
        """Stop sources, then deliver what is queued (bounded), then release everything."""
        log.info("Shutting down")
        parts = self.parts
        if parts.group_member is not None:
            _quietly(parts.group_member, "close")  # leave: the others take our streams now
        _quietly(parts.config_consumer, "close")
        _quietly(parts.manager, "close")
        for factory in parts.source_factories.values():
            _quietly(factory, "close")
        _close_producers([parts.output_producer, *parts.extra_producers], FLUSH_TIMEOUT_S)
        _quietly(parts.metrics, "stop")
        log.info("Shut down")


def _close_producers(producers: list[Any], timeout: float) -> None:
    """Flush and close all producers at once, so the wait is one timeout, not one each."""
    threads = [
        threading.Thread(
            target=_quietly, args=(p, "close", timeout), name="close-producer", daemon=True
        )
        for p in producers
    ]
    deadline = time.monotonic() + timeout + 1.0
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        log.error("Kafka producers did not close within %.0fs", timeout)


def _quietly(obj: Any, method: str, *args: Any) -> None:
    started = time.monotonic()
    try:
        getattr(obj, method)(*args)
    except Exception:
        log.exception("%s.%s failed during shutdown", type(obj).__name__, method)
    log.debug("%s.%s took %.2fs", type(obj).__name__, method, time.monotonic() - started)
