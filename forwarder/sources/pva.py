"""PV Access sources on one shared p4p client context (raw Values, see pva_convert).

p4p's monitor reconnects by itself and sends the current value on every (re)connect. It
has no connect event: the first value after a (re)connect is preceded by CONNECTED here.
With notify_disconnect a Disconnected arrives first, before any connection; it is only
reported once the PV had been connected (the stream layer handles NEVER_CONNECTED).
Callbacks run on p4p's process-wide worker queues (one queue per subscription, so in
order); those few daemon threads belong to p4p and outlive a closed context.
Status names: see pva_convert.alarm_of.
"""

from __future__ import annotations

import logging
import threading

from forwarder.sources.base import ConnectionCallback, UpdateCallback
from forwarder.sources.delivery import Delivery
from forwarder.sources.pva_convert import update_from_pva
from forwarder.update import ConnectionStatus

log = logging.getLogger(__name__)

REQUEST = "field(value,alarm,timeStamp)"


class PvaSource:
    """A monitor of one stream on one PVA PV."""

    def __init__(self, factory: PvaSourceFactory, delivery: Delivery):
        self._factory = factory
        self._delivery = delivery
        self._subscription = None
        self._connected = False

    def start(self) -> None:
        self._subscription = self._factory._monitor(self._delivery, self._on_event)

    def stop(self) -> None:
        self._delivery.close()
        self._factory._forget(self._delivery)
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()

    def _on_event(self, value) -> None:
        """p4p worker thread: a Value, or Disconnected / RemoteError / Cancelled."""
        from p4p.client.thread import Cancelled, Disconnected

        try:
            if isinstance(value, Disconnected):
                if self._connected:
                    self._connected = False
                    self._delivery.deliver_connection(ConnectionStatus.DISCONNECTED)
                return
            if isinstance(value, Cancelled):
                return
            if isinstance(value, Exception):
                log.error("PVA monitor of %s failed: %s", self._delivery.channel, value)
                return
            if not self._connected:
                self._connected = True
                self._delivery.deliver_connection(ConnectionStatus.CONNECTED)
            try:
                update = update_from_pva(self._delivery.channel, value)
            except Exception as error:
                self._delivery.conversion_failed(error)
                return
            self._delivery.deliver_update(update)
        except Exception:
            log.exception("PVA callback failed for %s", self._delivery.channel)


class PvaSourceFactory:
    """Makes PVA sources; creates the p4p context on first use and closes it on close."""

    def __init__(self):
        self._lock = threading.Lock()
        self._context = None
        self._closed = False
        self._live: set[Delivery] = set()

    def create(
        self, channel: str, on_update: UpdateCallback, on_connection: ConnectionCallback
    ) -> PvaSource:
        return PvaSource(self, Delivery(channel, on_update, on_connection))

    def _monitor(self, delivery: Delivery, callback):
        with self._lock:
            if self._closed:
                log.error("PVA source factory is closed; not subscribing to %s", delivery.channel)
                return None
            if self._context is None:
                from p4p.client.thread import Context

                self._context = Context("pva", nt=False)
            context = self._context
            self._live.add(delivery)
        return context.monitor(delivery.channel, callback, request=REQUEST, notify_disconnect=True)

    def _forget(self, delivery: Delivery) -> None:
        with self._lock:
            self._live.discard(delivery)

    def close(self) -> None:
        """Silences every source still running, then closes the context."""
        with self._lock:
            context, self._context = self._context, None
            live, self._live = list(self._live), set()
            self._closed = True
        for delivery in live:
            delivery.close()
        if context is not None:
            context.close()
