"""The logic of one stream (one PV, one schema, one topic) between its source and Kafka.

A stream decides what of its PV's updates is sent: it drops empty and out-of-order updates,
sends the schema's message, an al00 when the alarm changes, ep01 on connection changes, and
re-sends its last message periodically. The source calls ``on_update``/``on_connection``
from EPICS threads; the timers call back from the scheduler thread; one lock per stream
keeps the order of its messages (e.g. ep01 CONNECTED before the value) and its state sane.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from forwarder.config.streams import StreamSpec
from forwarder.kafka.stream_counts import StreamCounts
from forwarder.log_throttle import RateLimitedLog
from forwarder.metrics import Metrics
from forwarder.periodic import TimerScheduler
from forwarder.serialise.base import (
    AlarmSerialiser,
    ConnectionSerialiser,
    DataSerialiser,
    UnsupportedValue,
)
from forwarder.update import ConnectionStatus, Update

log = logging.getLogger(__name__)
_callback_errors = RateLimitedLog(log)

NS_PER_MS = 1_000_000
MAX_AGE_NS = 365 * 24 * 3600 * 1_000_000_000  # older than a year: a stale or bogus timestamp
MAX_FUTURE_NS = 10 * 60 * 1_000_000_000  # more than 10 min ahead: a clock gone wrong
NEVER_CONNECTED_GRACE_S = 2.0

# Schemas that get no separate al00: f142 carries the alarm in its own message, and an al00
# stream's own message already is the al00.
NO_SEPARATE_ALARM = frozenset({"f142", "al00"})


def reject_reason(timestamp_ns: int, last_ns: int | None, now_ns: int) -> str | None:
    """Why the timestamp filter drops an update, or None to accept it.

    An update not newer than the last accepted one is dropped: EPICS may repeat an update
    (e.g. a monitor re-delivered on reconnect) and out-of-order data would confuse consumers.
    """
    if last_ns is not None and timestamp_ns <= last_ns:
        return "not newer than the last accepted update"
    if timestamp_ns < now_ns - MAX_AGE_NS:
        return "more than a year old"
    if timestamp_ns > now_ns + MAX_FUTURE_NS:
        return "more than 10 minutes in the future"
    return None


class Stream:
    """One configured stream; create, ``start()``, feed it callbacks, ``close()``."""

    def __init__(
        self,
        spec: StreamSpec,
        serialiser: DataSerialiser,
        alarm_serialiser: AlarmSerialiser,
        connection_serialiser: ConnectionSerialiser,
        producer,
        metrics: Metrics,
        timers: TimerScheduler,
        *,
        service_id: str | None,
        period_s: float | None,
        never_connected_grace_s: float = NEVER_CONNECTED_GRACE_S,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.spec = spec
        self._serialiser = serialiser
        self._alarm_serialiser = alarm_serialiser
        self._connection_serialiser = connection_serialiser
        self._producer = producer
        self._metrics = metrics
        self._timers = timers
        self._service_id = service_id
        self._period_s = period_s
        self._grace_s = never_connected_grace_s
        self._now_ns = wall_clock_ns
        self._monotonic = timers.now
        self._key = spec.channel.encode("utf-8")
        self._send_alarms = spec.schema not in NO_SEPARATE_ALARM
        self._periodic = spec.periodic
        self.counts = StreamCounts(spec.channel, spec.topic)

        self._lock = threading.Lock()
        self._closed = False
        self._connected_seen = False
        self._never_connected_sent = False
        self._last_ts: int | None = None  # reset on CONNECTED, see on_connection
        self._last_alarm: tuple[int, str] | None = None
        self._last_payload: bytes | None = None
        self._unsupported_logged: set[str] = set()  # kinds of message already logged
        self._connection = ConnectionStatus.UNKNOWN
        self._last_update_ns: int | None = None  # EPICS time of the last update sent
        self._resend_key = (self, "resend")
        self._grace_key = (self, "grace")

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Arm the NEVER_CONNECTED timer; call before starting the source."""
        self._timers.set(self._grace_key, self._monotonic() + self._grace_s, self._grace_expired)

    def close(self) -> None:
        """After this returns the stream sends nothing more, whatever calls it still gets."""
        with self._lock:
            self._closed = True
        self._timers.cancel(self._resend_key)
        self._timers.cancel(self._grace_key)

    def set_periodic(self, periodic: bool) -> None:
        with self._lock:
            self.spec = dataclasses.replace(self.spec, periodic=periodic)
            self._periodic = periodic
            if periodic:
                self._arm_resend()
            else:
                self._timers.cancel(self._resend_key)

    def state(self) -> dict:
        """What the status message says about this stream beyond its spec."""
        counts = self.counts
        last = self._last_update_ns
        return {
            "connection": self._connection.value,
            "last_update_ms": None if last is None else last // NS_PER_MS,
            "forwarded": counts.forwarded,
            "dropped": counts.dropped,
            "error": counts.error,
        }

    # --- EPICS callbacks -------------------------------------------------------------------

    def on_update(self, update: Update) -> None:
        try:
            with self._lock:
                if not self._closed:
                    self._handle_update(update)
        except Exception:
            self._metrics.inc("callback_errors")
            _callback_errors.error(
                "Unexpected error handling an update of %s", self.spec.channel, exc_info=True
            )

    def on_connection(self, status: ConnectionStatus, timestamp_ns: int) -> None:
        try:
            with self._lock:
                if self._closed:
                    return
                if status is ConnectionStatus.CONNECTED:
                    self._connected_seen = True
                    # The IOC may come back with an unchanged record (same EPICS timestamp);
                    # forgetting the last timestamp lets that first value through.
                    self._last_ts = None
                elif status is ConnectionStatus.NEVER_CONNECTED:
                    self._never_connected_sent = True
                self._connection = status
                self._send_connection(status, timestamp_ns)
            if status is ConnectionStatus.CONNECTED:
                self._timers.cancel(self._grace_key)
        except Exception:
            self._metrics.inc("callback_errors")
            _callback_errors.error(
                "Unexpected error handling a connection change of %s",
                self.spec.channel,
                exc_info=True,
            )

    # --- internals (called with the lock held) ---------------------------------------------

    def _handle_update(self, update: Update) -> None:
        # A value proves the PV is connected, even if a source reported it late or not at all.
        self._connected_seen = True
        if update.is_empty():
            return
        now_ns = self._now_ns()
        reason = reject_reason(update.timestamp_ns, self._last_ts, now_ns)
        if reason is not None:
            self._metrics.inc("updates_rejected")
            log.debug(
                "Dropped update of %s (timestamp %d): %s",
                self.spec.channel,
                update.timestamp_ns,
                reason,
            )
            return
        self._last_ts = update.timestamp_ns
        timestamp_ms = update.timestamp_ns // NS_PER_MS

        payload = self._serialise(self.spec.schema, self._serialiser.serialise, update)
        if payload is not None:
            self._producer.produce(
                self.spec.topic, self._key, payload, timestamp_ms, stream=self.counts
            )
            self._last_update_ns = update.timestamp_ns
            self._metrics.observe(
                "latency_epics_to_produce", max(0, now_ns - update.timestamp_ns) / 1e9
            )
            self._last_payload = payload
            self._arm_resend()

        if self._send_alarms:
            alarm = update.alarm
            current = (int(alarm.severity), alarm.message)
            if current != self._last_alarm:
                self._last_alarm = current
                message = self._serialise(
                    "alarm",
                    self._alarm_serialiser.serialise,
                    self.spec.channel,
                    update.timestamp_ns,
                    alarm,
                )
                if message is not None:
                    self._producer.produce(
                        self.spec.topic, self._key, message, timestamp_ms, stream=self.counts
                    )

    def _send_connection(self, status: ConnectionStatus, timestamp_ns: int) -> None:
        message = self._serialise(
            "connection",
            self._connection_serialiser.serialise,
            self.spec.channel,
            timestamp_ns,
            status,
            self._service_id,
        )
        if message is not None:
            self._producer.produce(
                self.spec.topic,
                self._key,
                message,
                timestamp_ns // NS_PER_MS,
                stream=self.counts,
            )

    def _serialise(self, kind: str, serialise: Callable[..., bytes | None], *args) -> bytes | None:
        """``serialise(*args)``, or None when the schema cannot carry it: an unsendable value
        is a property of the PV, so it is counted each time but logged once per kind."""
        try:
            return serialise(*args)
        except UnsupportedValue as e:
            self._metrics.inc("processing_errors")
            if kind not in self._unsupported_logged:
                self._unsupported_logged.add(kind)
                log.error(
                    "PV %s cannot be sent as %s: %s (logged once for this stream)",
                    self.spec.channel,
                    kind,
                    e,
                )
            return None

    def _arm_resend(self) -> None:
        if self._periodic and self._period_s and self._last_payload is not None:
            self._timers.set(self._resend_key, self._monotonic() + self._period_s, self._resend)

    # --- timer callbacks (scheduler thread) ------------------------------------------------

    def _resend(self) -> None:
        try:
            with self._lock:
                if self._closed or not self._periodic or self._last_payload is None:
                    return
                now_ms = self._now_ns() // NS_PER_MS
                self._producer.produce(
                    self.spec.topic, self._key, self._last_payload, now_ms, stream=self.counts
                )
                self._arm_resend()
        except Exception:
            self._metrics.inc("callback_errors")
            _callback_errors.error("Error re-sending %s", self.spec.channel, exc_info=True)

    def _grace_expired(self) -> None:
        try:
            with self._lock:
                if self._closed or self._connected_seen or self._never_connected_sent:
                    return
                self._never_connected_sent = True
                self._connection = ConnectionStatus.NEVER_CONNECTED
                self._send_connection(ConnectionStatus.NEVER_CONNECTED, self._now_ns())
        except Exception:
            self._metrics.inc("callback_errors")
            _callback_errors.error(
                "Error reporting %s as never connected", self.spec.channel, exc_info=True
            )
