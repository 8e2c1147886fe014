"""Channel Access sources on pyepics' low-level ``epics.ca`` module (libca).

One libca context with preemptive callbacks serves every CA source. pyepics keeps one
channel per PV name and context, so sources of the same PV share a ``_Channel`` that owns
the channel and its DBR_TIME subscription and fans updates out to the sources.

The subscription is made on the first connection, when the native type is known, with
count=0 so that waveforms arrive with their NORD length. libca keeps it across
disconnects and, on reconnect, sends the current value again after the connection
callback; a changed native type after an IOC restart gets a fresh subscription.

The initial value is forwarded on every (re)connection, always. pyepics' poll() after
ca_create_subscription is a no-op on a libca callback thread (ca_pend_event returns
ECA_EVDISALLOW there), so the request made in the connection callback is flushed
explicitly. As a safety net, a channel that is connected but has had no value after
INITIAL_VALUE_DEADLINE_S fetches one with a DBR_TIME get from the factory's timer thread
(never from a libca callback thread or the caller of start()); the stream layer rejects
a later monitor event with the same EPICS timestamp, so nothing is forwarded twice.

Every event of a channel runs on the factory's event thread (``ca_dispatch``), in libca's
order: numeric monitor events arrive there from libca's C callback in batches without
entering Python on libca's threads; connection changes and string updates are queued there
by the pyepics callbacks. Subscribing happens on that thread too.

The factory's other two threads: a ``TimerScheduler`` of its own for those checks (a fetch may
block for FETCH_TIMEOUT_S, so it must not delay the streams' timers), and a one-worker
executor that replays the current state to sources joining a connected channel, in order.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from forwarder.periodic import TimerScheduler
from forwarder.sources import ca_events
from forwarder.sources.base import ConnectionCallback, UpdateCallback
from forwarder.sources.ca_convert import TIME_OFFSET, alarm_of, update_from_ca
from forwarder.sources.ca_dispatch import CaDispatcher, PyEventQueue
from forwarder.sources.delivery import Delivery
from forwarder.sources.thread_state import keep_thread_state
from forwarder.update import ConnectionStatus, Update

log = logging.getLogger(__name__)

# Seconds a connected channel may go without a value before it fetches one.
INITIAL_VALUE_DEADLINE_S = 2.0
# Seconds the fetch waits for the IOC's answer.
FETCH_TIMEOUT_S = 2.0
# The factory's threads, as a thread dump shows them.
TIMER_THREAD_NAME = "ca-timers"
REPLAY_THREAD_NAME = "ca-replay"


def _ca():
    """Import pyepics' CA module only when CA is used (importing it does not start libca)."""
    from epics import ca

    return ca


class _Inline:
    """Runs a channel's events at once, on the caller's thread (unit tests without libca)."""

    native = False

    def register(self, channel) -> int:
        return 0

    def unregister(self, slot: int) -> None:
        pass

    def put(self, slot: int, call) -> bool:
        call()
        return True


class _Channel:
    """One CA channel and its subscription, shared by the sources of one PV name."""

    def __init__(
        self,
        name: str,
        timers: TimerScheduler | None = None,
        events: CaDispatcher | _Inline | None = None,
    ):
        self.name = name
        self._timers = timers
        self._events = events if events is not None else _Inline()
        self._slot = self._events.register(self)
        self._lock = threading.Lock()
        # Held while subscribing (event thread) and while clearing (close): a connection
        # change still queued when the channel closes must not subscribe on a cleared chid.
        self._libca_lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._connected = False
        self._closed = False
        self._generation = 0  # counts connections: a check belongs to one of them
        self._chid_int: int | None = None
        self._last_update: Update | None = None
        self._subscription = None  # pyepics' (callback, user arg, event id): keep it alive
        self._subscribed_type: int | None = None
        self._chid = None

    def open(self) -> None:
        ca = _ca()
        ca.use_initial_context()
        self._chid = ca.create_channel(self.name, connect=False, callback=self._on_connection)
        ca.flush_io()

    def add(self, delivery: Delivery, replayer: ThreadPoolExecutor) -> None:
        """A source joining a connected channel gets CONNECTED and the latest value.

        They come from the replay thread, never from the caller of start(), and before any
        newer value: the source joins the fan-out in the same locked step.
        """
        with self._lock:
            if not self._connected:
                self._deliveries.append(delivery)
                return
        replayer.submit(self._join, delivery)

    def _join(self, delivery: Delivery) -> None:
        # The executor would keep an exception in a future nobody reads: log it here.
        try:
            with self._lock:
                if delivery.closed:
                    return
                if self._connected:
                    delivery.deliver_connection(ConnectionStatus.CONNECTED)
                    if self._last_update is not None:
                        delivery.deliver_update(self._last_update)
                self._deliveries.append(delivery)
        except Exception:
            log.exception("CA replay failed")

    def remove(self, delivery: Delivery) -> bool:
        """Returns True when no source is left (close() also silences any still there)."""
        with self._lock:
            if delivery in self._deliveries:
                self._deliveries.remove(delivery)
            return not self._deliveries

    def close(self) -> None:
        with self._lock:
            self._closed = True
            deliveries, self._deliveries = self._deliveries, []
        for d in deliveries:
            d.close()
        self._events.unregister(self._slot)
        ca = _ca()
        ca.use_initial_context()
        with self._libca_lock:
            try:
                if self._subscription is not None:
                    ca.clear_subscription(self._subscription[2])
                if self._chid is not None:
                    ca.clear_channel(self._chid)
                ca.flush_io()
            except Exception:
                log.exception("closing CA channel %s failed", self.name)
            self._subscription = None

    # -- libca callbacks (libca threads): queue the event, never raise ---------------------

    def _on_connection(self, pvname=None, chid=None, conn=False, **_):
        keep_thread_state()
        self._events.put(self._slot, functools.partial(self._connection_changed, chid, conn))

    def _on_value(self, value=None, **kwargs):
        """pyepics' monitor callback (DBR_TIME_STRING; numeric types come via _ca_queue)."""
        keep_thread_state()
        try:
            update = update_from_ca(self.name, value, kwargs)
        except Exception as error:
            self._queue_failure(error)
            return
        self._queue_update(update)

    def _queue_update(self, update: Update) -> None:
        """An Update made on libca's thread (pyepics' and ca_events' ctypes callbacks)."""
        self._events.put(self._slot, functools.partial(self._fan_out, update))

    def _queue_failure(self, error: Exception) -> None:
        self._events.put(self._slot, functools.partial(self._conversion_failed, error))

    # -- events (the factory's event thread) -----------------------------------------------

    def native_event(self, value, timestamp_ns: int, status: int, severity: int) -> None:
        """A numeric monitor event from the native queue."""
        self._fan_out(Update(self.name, value, timestamp_ns, alarm_of(status, severity)))

    def _connection_changed(self, chid, conn) -> None:
        try:
            status = ConnectionStatus.CONNECTED if conn else ConnectionStatus.DISCONNECTED
            with self._lock:
                self._connected = bool(conn)
                self._generation += 1
                generation = self._generation
                if not conn:
                    self._last_update = None
                else:
                    self._chid_int = chid
                deliveries = list(self._deliveries)
            for d in deliveries:
                d.deliver_connection(status)
            if conn:
                with self._libca_lock:
                    if self._closed:
                        return
                    self._subscribe(chid)
                if self._timers is not None:
                    # One check per channel: a newer connection's replaces an older one's,
                    # which would find its generation stale and do nothing anyway.
                    self._timers.set(
                        self,
                        self._timers.now() + INITIAL_VALUE_DEADLINE_S,
                        lambda: self.check_value(generation),
                    )
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
        if time_type in ca_events.DIRECT_TYPES and self._events.native:
            self._subscription = ca_events.subscribe_native(
                ca, chid, time_type, ca.DEFAULT_SUBSCRIPTION_MASK, self._events, self._slot
            )
        elif time_type in ca_events.DIRECT_TYPES:
            handler = ca_events.Handler(self.name, self._queue_update, self._queue_failure)
            self._subscription = ca_events.subscribe(
                ca, chid, time_type, ca.DEFAULT_SUBSCRIPTION_MASK, handler
            )
        else:
            self._subscription = ca.create_subscription(
                chid, ftype=time_type, count=0, callback=self._on_value
            )
        self._subscribed_type = time_type
        # On a libca callback thread pyepics' poll() does not flush: without this the
        # request (and so the initial value) may wait for an unrelated flush.
        ca.flush_io()

    def _conversion_failed(self, error: Exception) -> None:
        with self._lock:
            deliveries = list(self._deliveries)
        if not deliveries:
            log.error("dropping update of %s: cannot convert it (%s)", self.name, error)
        for d in deliveries:
            d.conversion_failed(error)

    def _fan_out(self, update: Update) -> None:
        with self._lock:
            self._last_update = update
            deliveries = list(self._deliveries)
        for d in deliveries:
            d.deliver_update(update)

    # -- safety net (timer thread) ----------------------------------------------------------

    def check_value(self, generation: int) -> None:
        """Fetches the value of connection ``generation`` if none has arrived yet."""
        with self._lock:
            if (
                self._closed
                or generation != self._generation
                or not self._connected
                or self._last_update is not None
                or self._subscribed_type is None
            ):
                return
            chid, time_type = self._chid_int, self._subscribed_type
        log.warning(
            "%s: no value %.1fs after connecting; fetching it", self.name, INITIAL_VALUE_DEADLINE_S
        )
        try:
            data = self._fetch(chid, time_type)
        except Exception:
            if not self._closed:
                log.exception("fetching the value of %s failed", self.name)
            return
        if data is None:
            log.warning("fetching the value of %s timed out", self.name)
            return
        try:
            value = data.pop("value")
            update = update_from_ca(self.name, value, {**data, "ftype": time_type})
        except Exception as error:
            log.error("dropping fetched value of %s: cannot convert it (%s)", self.name, error)
            return
        with self._lock:
            if self._closed or generation != self._generation or self._last_update is not None:
                return  # a monitor event came first
            self._last_update = update
            # Under the lock, so that a newer monitor event cannot overtake it.
            for d in self._deliveries:
                d.deliver_update(update)

    def _fetch(self, chid, time_type: int) -> dict | None:
        ca = _ca()
        ca.use_initial_context()
        ca.flush_io()
        # count=0: the IOC sends the current length (NORD for waveforms), as the monitor does.
        return ca.get_with_metadata(
            chid, ftype=time_type, count=0, wait=True, timeout=FETCH_TIMEOUT_S
        )


def _name_replay_thread() -> None:
    """The executor's worker goes by the one name, as the threads of the factory do."""
    threading.current_thread().name = REPLAY_THREAD_NAME


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

    def __init__(self, native: bool = True):
        self._lock = threading.Lock()
        self._native = native  # False: numeric events through ctypes (the reference path)
        self._events: CaDispatcher | None = None
        self._channels: dict[str, _Channel] = {}
        self._started = False
        self._closed = False
        # Used under self._lock only, so nothing is submitted after shutdown. Its worker
        # starts with the first replay, the timer thread with libca; close() stops both.
        self._replayer = ThreadPoolExecutor(max_workers=1, initializer=_name_replay_thread)
        self._timers = TimerScheduler()

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
                    self._timers.start(TIMER_THREAD_NAME)
                    self._events = self._start_events()
                    self._started = True
                ch = self._channels[delivery.channel] = _Channel(
                    delivery.channel, self._timers, self._events
                )
                ch.open()
            ch.add(delivery, self._replayer)

    def _start_events(self) -> CaDispatcher:
        events = CaDispatcher() if self._native else CaDispatcher(PyEventQueue())
        if events.native:
            log.info("CA numeric events: native queue (libca's C callback, batches)")
        elif self._native:
            log.warning(
                "CA numeric events: the native queue (forwarder.sources._ca_queue) is not built; "
                "every event enters Python on libca's threads, several times the CPU per update"
            )
        events.start()
        return events

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
            self._replayer.shutdown(wait=True)  # replays already submitted run first
        self._timers.stop()
        for ch in channels:
            ch.close()
        if started:
            started_at = time.monotonic()
            _ca().finalize_libca(maxtime=2.0)
            log.debug("libca finalised in %.2fs", time.monotonic() - started_at)
        if self._events is not None:
            self._events.close()
