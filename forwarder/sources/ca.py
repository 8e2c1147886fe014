"""Channel Access sources on pyepics' low-level ``epics.ca`` module (libca).

One libca context with preemptive callbacks serves every CA source. pyepics keeps one
channel per PV name and context, so sources of the same PV share a ``_Channel`` that owns
the channel and its DBR_TIME subscription and fans updates out to the sources.

The subscription is made on the first connection, when the native type is known, with
count=0 so that waveforms arrive with their NORD length. libca keeps it across
disconnects and, on reconnect, sends the current value again after the connection
callback; a changed native type after an IOC restart gets a fresh subscription.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from forwarder.sources.base import ConnectionCallback, UpdateCallback
from forwarder.sources.ca_convert import TIME_OFFSET, update_from_ca
from forwarder.sources.delivery import Delivery
from forwarder.update import ConnectionStatus, Update

log = logging.getLogger(__name__)


def _ca():
    """Import pyepics' CA module only when CA is used (importing it does not start libca)."""
    from epics import ca

    return ca


class _Channel:
    """One CA channel and its subscription, shared by the sources of one PV name."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._connected = False
        self._last_update: Update | None = None
        self._subscription = None  # pyepics' (callback, user arg, event id): keep it alive
        self._subscribed_type: int | None = None
        self._chid = None

    def open(self) -> None:
        ca = _ca()
        ca.use_initial_context()
        self._chid = ca.create_channel(self.name, connect=False, callback=self._on_connection)
        ca.flush_io()

    def add(self, delivery: Delivery, replayer: _Replayer) -> None:
        """A source joining a connected channel gets CONNECTED and the latest value.

        They come from the replay thread, never from the caller of start(), and before any
        newer value: the source joins the fan-out in the same locked step.
        """
        with self._lock:
            if not self._connected:
                self._deliveries.append(delivery)
                return
        replayer.submit(lambda: self._join(delivery))

    def _join(self, delivery: Delivery) -> None:
        with self._lock:
            if delivery.closed:
                return
            if self._connected:
                delivery.deliver_connection(ConnectionStatus.CONNECTED)
                if self._last_update is not None:
                    delivery.deliver_update(self._last_update)
            self._deliveries.append(delivery)

    def remove(self, delivery: Delivery) -> bool:
        """Returns True when no source is left (close() also silences any still there)."""
        with self._lock:
            if delivery in self._deliveries:
                self._deliveries.remove(delivery)
            return not self._deliveries

    def close(self) -> None:
        with self._lock:
            deliveries, self._deliveries = self._deliveries, []
        for d in deliveries:
            d.close()
        ca = _ca()
        ca.use_initial_context()
        try:
            if self._subscription is not None:
                ca.clear_subscription(self._subscription[2])
            if self._chid is not None:
                ca.clear_channel(self._chid)
            ca.flush_io()
        except Exception:
            log.exception("closing CA channel %s failed", self.name)
        self._subscription = None

    # -- libca callbacks (libca threads): cheap, never raise -------------------------------

    def _on_connection(self, pvname=None, chid=None, conn=False, **_):
        try:
            status = ConnectionStatus.CONNECTED if conn else ConnectionStatus.DISCONNECTED
            with self._lock:
                self._connected = bool(conn)
                if not conn:
                    self._last_update = None
                deliveries = list(self._deliveries)
            for d in deliveries:
                d.deliver_connection(status)
            if conn:
                self._subscribe(chid)
        except Exception:
            log.exception("CA connection callback failed for %s", self.name)

    def _subscribe(self, chid) -> None:
        # The chid argument, not self._chid: this may run before create_channel returned.
        ca = _ca()
        ca.use_initial_context()
        time_type = ca.field_type(chid) + TIME_OFFSET
        if self._subscription is not None and self._subscribed_type == time_type:
            return  # libca renews the subscription itself
        if self._subscription is not None:
            log.info("%s changed type; subscribing again", self.name)
            ca.clear_subscription(self._subscription[2])
        self._subscription = ca.create_subscription(
            chid, ftype=time_type, count=0, callback=self._on_value
        )
        self._subscribed_type = time_type

    def _on_value(self, value=None, **kwargs):
        try:
            update = update_from_ca(self.name, value, kwargs)
        except Exception as error:
            with self._lock:
                deliveries = list(self._deliveries)
            for d in deliveries:
                d.conversion_failed(error)
            return
        with self._lock:
            self._last_update = update
            deliveries = list(self._deliveries)
        for d in deliveries:
            d.deliver_update(update)


class _Replayer:
    """One thread that brings sources joining an already connected channel up to date."""

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, job) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ca-replay", daemon=True)
            self._thread.start()
        self._queue.put(job)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("CA replay failed")

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None


class CaSource:
    """A subscription of one stream to one CA PV."""

    def __init__(self, factory: CaSourceFactory, delivery: Delivery):
        self._factory = factory
        self._delivery = delivery

    def start(self) -> None:
        self._factory._attach(self._delivery)

    def stop(self) -> None:
        self._delivery.close()
        self._factory._detach(self._delivery)


class CaSourceFactory:
    """Makes CA sources; starts libca on first use and finalises it on close.

    pyepics cannot restart libca after finalising it, so a closed factory stays closed.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._started = False
        self._closed = False
        self._replayer = _Replayer()  # used under self._lock only

    def create(
        self, channel: str, on_update: UpdateCallback, on_connection: ConnectionCallback
    ) -> CaSource:
        return CaSource(self, Delivery(channel, on_update, on_connection))

    def _attach(self, delivery: Delivery) -> None:
        with self._lock:
            if self._closed:
                log.error("CA source factory is closed; not subscribing to %s", delivery.channel)
                return
            ch = self._channels.get(delivery.channel)
            if ch is None:
                if not self._started:
                    ca = _ca()
                    if ca.libca is None:
                        ca.initialize_libca()  # PREEMPTIVE_CALLBACK is pyepics' default
                    self._started = True
                ch = self._channels[delivery.channel] = _Channel(delivery.channel)
                ch.open()
            ch.add(delivery, self._replayer)

    def _detach(self, delivery: Delivery) -> None:
        # Closed under the lock: pyepics would hand a new source of the same name the old
        # channel while it is being cleared.
        with self._lock:
            ch = self._channels.get(delivery.channel)
            if ch is None or not ch.remove(delivery):
                return
            del self._channels[delivery.channel]
            ch.close()

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
            started, self._started = self._started, False
            self._closed = True
            self._replayer.close()
        for ch in channels:
            ch.close()
        if started:
            started_at = time.monotonic()
            _ca().finalize_libca(maxtime=2.0)
            log.debug("libca finalised in %.2fs", time.monotonic() - started_at)
