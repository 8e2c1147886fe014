"""The set of running streams, as the config messages (fc00 ADD/REMOVE) shape it.

The config loop calls in here while EPICS callbacks run on other threads, so every change of
the set happens under one lock, while the slow parts (stopping sources) happen outside it.
One producer and one timer thread are shared by all streams; removing a stream only stops
its source and its timers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from forwarder.config.streams import StreamPattern, StreamSpec
from forwarder.metrics import Metrics
from forwarder.periodic import TimerScheduler
from forwarder.serialise import (
    UnknownSchema,
    alarm_serialiser,
    connection_serialiser,
    make_data_serialiser,
)
from forwarder.serialise.base import AlarmSerialiser, ConnectionSerialiser, DataSerialiser
from forwarder.sources.base import Source, SourceFactory
from forwarder.stream import NEVER_CONNECTED_GRACE_S, Stream

log = logging.getLogger(__name__)


class StreamManager:
    """Adds, removes and closes streams; thread-safe."""

    def __init__(
        self,
        producer,
        source_factories: Mapping[str, SourceFactory],
        *,
        service_id: str,
        pv_update_period_ms: int | None,
        metrics: Metrics,
        never_connected_grace_s: float = NEVER_CONNECTED_GRACE_S,
        data_serialiser_factory: Callable[[str, str], DataSerialiser] = make_data_serialiser,
        alarm: AlarmSerialiser | None = None,
        connection: ConnectionSerialiser | None = None,
        timers: TimerScheduler | None = None,
    ) -> None:
        self._producer = producer
        self._factories = {name.upper(): f for name, f in source_factories.items()}
        self._service_id = service_id
        self._period_s = pv_update_period_ms / 1000 if pv_update_period_ms else None
        self._metrics = metrics
        self._grace_s = never_connected_grace_s
        self._make_serialiser = data_serialiser_factory
        self._alarm = alarm
        self._connection = connection
        self._own_timers = timers is None
        self._timers = timers if timers is not None else TimerScheduler()
        if self._own_timers:
            self._timers.start()
        self._lock = threading.Lock()
        self._streams: dict[tuple[str, str, str, str], tuple[Stream, Source]] = {}
        self._closed = False

    def add(self, spec: StreamSpec) -> bool:
        """Start a stream; False if it already exists as asked, or cannot be made."""
        with self._lock:
            if self._closed:
                log.error("Stream %s not added: the forwarder is shutting down", spec)
                return False
            existing = self._streams.get(spec.key)
            if existing is not None:
                stream = existing[0]
                if stream.spec == spec:
                    return False
                stream.set_periodic(spec.periodic)
                log.info("Stream %s: periodic set to %s", spec.channel, spec.periodic)
                return True
            factory = self._factories.get(spec.protocol.upper())
            if factory is None:
                log.error(
                    "Stream %s -> %s not added: unknown protocol %r",
                    spec.channel,
                    spec.topic,
                    spec.protocol,
                )
                return False
            try:
                serialiser = self._make_serialiser(spec.schema, spec.channel)
            except UnknownSchema as e:
                log.error(
                    "Stream %s -> %s not added: unknown schema %r (%s)",
                    spec.channel,
                    spec.topic,
                    spec.schema,
                    e,
                )
                return False
            if self._alarm is None:
                self._alarm = alarm_serialiser()
            if self._connection is None:
                self._connection = connection_serialiser()
            stream = Stream(
                spec,
                serialiser,
                self._alarm,
                self._connection,
                self._producer,
                self._metrics,
                self._timers,
                service_id=self._service_id,
                period_s=self._period_s,
                never_connected_grace_s=self._grace_s,
            )
            try:
                source = factory.create(spec.channel, stream.on_update, stream.on_connection)
                stream.start()
                source.start()
            except Exception:
                stream.close()
                log.exception("Stream %s -> %s not added: source failed", spec.channel, spec.topic)
                return False
            self._streams[spec.key] = (stream, source)
            self._metrics.set("pvs_subscribed", len(self._streams))
            return True

    def remove(self, pattern: StreamPattern) -> list[StreamSpec]:
        """Stop every stream the pattern matches; return their specs."""
        with self._lock:
            keys = [k for k, (stream, _) in self._streams.items() if pattern.matches(stream.spec)]
            removed = [self._streams.pop(k) for k in keys]
            self._metrics.set("pvs_subscribed", len(self._streams))
        return self._stop(removed)

    def remove_all(self) -> list[StreamSpec]:
        with self._lock:
            removed = list(self._streams.values())
            self._streams.clear()
            self._metrics.set("pvs_subscribed", 0)
        return self._stop(removed)

    def specs(self) -> list[StreamSpec]:
        with self._lock:
            return [stream.spec for stream, _ in self._streams.values()]

    def stream_state(self, spec: StreamSpec) -> dict:
        """The running state of the stream ``spec`` names (empty if it is not running)."""
        with self._lock:
            entry = self._streams.get(spec.key)
        return {} if entry is None else entry[0].state()

    def close(self) -> None:
        """Stop all sources and timers; no stream sends anything after this returns.

        The producer and the source factories belong to the caller and stay open.
        """
        with self._lock:
            self._closed = True
        self.remove_all()
        if self._own_timers:
            self._timers.stop()

    def _stop(self, removed: list[tuple[Stream, Source]]) -> list[StreamSpec]:
        specs = []
        for stream, source in removed:
            try:
                source.stop()
            except Exception:
                log.exception("Error stopping the source of %s", stream.spec.channel)
            stream.close()  # guards against a callback already in flight in the source
            specs.append(stream.spec)
        return specs
