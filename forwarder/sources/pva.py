"""PV Access sources on one shared p4p client context (raw Values, see pva_convert).

p4p's monitor reconnects by itself and sends the current value on every (re)connect. It
has no connect event: the first value after a (re)connect is preceded by CONNECTED here.
With notify_disconnect a Disconnected arrives first, before any connection; it is only
reported once the PV had been connected (the stream layer handles NEVER_CONNECTED).
Callbacks run on p4p's process-wide worker queues (one queue per subscription, so in
order); those few daemon threads belong to p4p and outlive a closed context.
Status names: see pva_convert.alarm_of.

Silent subscriptions (p4p 4.3, p4p/client/thread.py): ``Context.monitor`` builds a
``Subscription`` whose handle ``_S`` is assigned only after the raw monitor call returns.
The raw monitor calls ``Subscription._event`` from a PVXS thread when its queue becomes
non-empty; if that happens before ``_S`` is set (a fast server, a busy interpreter), the
``assert`` in ``_event`` fails, p4p logs "Lost Subscription update for <pv>" and nobody
pops the queue. PVXS signals again only after a pop has found the queue empty, so that
subscription stays silent for good. Two defences: ``_rearm`` schedules one drain of the
queue once the handle is set (the lost wakeup's work is done then), and a
``SilenceWatchdog`` re-creates any subscription that still delivers no value (see
pva_watchdog for the back-off on absent PVs).
"""

from __future__ import annotations

import logging
import threading
from functools import partial

from forwarder.settings import PVA_QUEUE_SIZE
from forwarder.sources.base import ConnectionCallback, UpdateCallback
from forwarder.sources.delivery import Delivery
from forwarder.sources.pva_convert import update_from_pva
from forwarder.sources.pva_watchdog import FIRST_S, MAX_S, SilenceWatchdog
from forwarder.sources.thread_state import keep_thread_state
from forwarder.update import ConnectionStatus

log = logging.getLogger(__name__)

FIELDS = "field(value,alarm,timeStamp)"


def monitor_request(queue_size: int = PVA_QUEUE_SIZE) -> str:
    """The pvRequest of every monitor: the fields we serialise and the queue depth."""
    return f"record[queueSize={queue_size}]{FIELDS}"


class PvaSource:
    """A monitor of one stream on one PVA PV.

    Events of a subscription carry its generation; a re-subscription starts a new one under
    the lock, so a replaced subscription's late events are dropped, never delivered twice.
    """

    def __init__(self, factory: PvaSourceFactory, delivery: Delivery):
        self._factory = factory
        self._delivery = delivery
        # Re-entrant: a pipeline callback (run under it) may stop its own source.
        self._lock = threading.RLock()
        self._subscription = None
        self._generation = 0
        self._connected = False
        self._has_value = False
        self._stopped = False

    def start(self) -> None:
        self._factory._watchdog.watch(self, PvaSource._resubscribe_if_silent)
        self._subscribe()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._generation += 1
            subscription, self._subscription = self._subscription, None
            self._delivery.close()
        self._factory._watchdog.settle(self)
        self._factory._forget(self._delivery)
        if subscription is not None:
            subscription.close()

    def _subscribe(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._generation += 1
            generation = self._generation
        subscription = self._factory._monitor(self._delivery, partial(self._on_event, generation))
        with self._lock:
            if generation == self._generation:
                self._subscription, subscription = subscription, None
        if subscription is not None:  # stopped or replaced while subscribing
            subscription.close()

    def _resubscribe_if_silent(self) -> bool:
        """Watchdog thread: re-creates a subscription that has delivered no value yet."""
        with self._lock:
            if self._stopped or self._has_value:
                return False
            self._generation += 1  # from here on the old subscription is not heard
            old, self._subscription = self._subscription, None
        log.warning(
            "PVA subscription to %s delivered no value; re-subscribing", self._delivery.channel
        )
        self._factory._count_resubscription()
        if old is not None:
            old.close()
        self._subscribe()
        return True

    def _on_event(self, generation: int, value) -> None:
        """p4p worker thread: a Value, or Disconnected / RemoteError / Cancelled."""
        from p4p.client.thread import Cancelled, Disconnected

        try:
            with self._lock:
                if generation != self._generation:
                    return  # a closed or replaced subscription
                if isinstance(value, Disconnected):
                    if self._connected:
                        self._connected = False
                        self._delivery.deliver_connection(ConnectionStatus.DISCONNECTED)
                    return
                if isinstance(value, Cancelled):
                    return
                if isinstance(value, Exception):
                    self._settle()  # the server answered: re-subscribing would not help
                    log.error("PVA monitor of %s failed: %s", self._delivery.channel, value)
                    return
                self._settle()
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

    def _settle(self) -> None:
        if not self._has_value:
            self._has_value = True
            self._factory._watchdog.settle(self)


def _rearm(subscription) -> None:
    """Drains the queue of a fresh p4p Subscription once, now that its handle is set.

    Recovers a first wakeup lost to the race described in the module docstring. Safe when
    nothing was lost: the drain runs on the subscription's own single-worker queue, in
    order with p4p's own drains, and an empty pop is a no-op that re-arms PVXS's wakeup.
    """
    try:
        subscription._Q.push(subscription._handle)
    except AttributeError:  # another p4p version: the watchdog still covers the race
        log.debug("cannot re-arm p4p subscription %r", subscription)


def _import_p4p() -> None:
    try:
        import p4p.client.thread  # noqa: F401
    except Exception:  # reported where the first subscription imports it again
        log.debug("importing p4p at start failed", exc_info=True)


def _keep_thread_state_on_wakeups() -> None:
    """PVXS threads enter Python once per wakeup of a subscription (``Subscription._event``,
    about once per update at 10 Hz per PV); make each keep its thread state (thread_state).
    Done once per process, on p4p's class, for the subscriptions made after it."""
    from p4p.client.thread import Subscription

    wakeup = getattr(Subscription, "_event", None)
    if wakeup is None or getattr(wakeup, "keeps_thread_state", False):
        return  # another p4p version, or done already

    def _event(self):
        keep_thread_state()
        wakeup(self)

    _event.keeps_thread_state = True
    Subscription._event = _event


class PvaSourceFactory:
    """Makes PVA sources; creates the p4p context on first use and closes it on close."""

    def __init__(
        self,
        metrics=None,
        silence_s: float = FIRST_S,
        max_silence_s: float = MAX_S,
        queue_size: int = PVA_QUEUE_SIZE,
    ):
        self._request = monitor_request(queue_size)
        # The first PVA stream must not wait for p4p's import (PVXS and EPICS libraries,
        # 1.4 s on a loaded 2-core machine, holding up that command's status): done now, at
        # start, on the caller's thread. Not in a thread of its own: importing p4p imports
        # distutils, whose setuptools shim imports while holding Python's global import lock,
        # and a forwarder whose main thread imported at the same moment hung at start for
        # good (1 start in about 50). Importing starts no client.
        _import_p4p()
        self._lock = threading.Lock()
        self._context = None
        self._closed = False
        self._live: set[Delivery] = set()
        self._metrics = metrics
        self._watchdog = SilenceWatchdog(silence_s, max_silence_s)

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

                _keep_thread_state_on_wakeups()
                self._context = Context("pva", nt=False)
            context = self._context
            self._live.add(delivery)
        subscription = context.monitor(
            delivery.channel, callback, request=self._request, notify_disconnect=True
        )
        _rearm(subscription)
        return subscription

    def _count_resubscription(self) -> None:
        if self._metrics is not None:
            self._metrics.inc("pva_resubscriptions")

    def _forget(self, delivery: Delivery) -> None:
        with self._lock:
            self._live.discard(delivery)

    def close(self) -> None:
        """Silences every source still running, then closes the context."""
        self._watchdog.close()
        with self._lock:
            context, self._context = self._context, None
            live, self._live = list(self._live), set()
            self._closed = True
        for delivery in live:
            delivery.close()
        if context is not None:
            context.close()
