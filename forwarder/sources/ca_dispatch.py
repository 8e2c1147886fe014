"""One thread that runs every CA channel's events, in the order libca produced them.

Numeric monitor events never enter Python on libca's threads: the C callback of
``_ca_queue`` copies them into a queue and returns (issue 11: entering Python from a foreign
thread cost more than the rest of the pipeline). This thread takes them in batches, already
unpacked, and hands each to its channel. Everything else a channel hears from libca
(connection changes, string updates through pyepics) is put on the same queue as a call,
so a channel's events keep libca's order: a value from before a disconnect never lands
after it.

Without the extension (a source tree nobody built) ``PyEventQueue`` keeps the same contract
in Python and numeric events come through ``ca_events``' ctypes callback: slower, the same
Updates. The forwarder logs which one it runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from forwarder.sources.ca_convert import NUMPY_TYPES

log = logging.getLogger(__name__)

THREAD_NAME = "ca-events"
TAKE_TIMEOUT_S = 0.5  # a taker with nothing to do still looks at its closing flag this often
MAX_QUEUED = 65536  # events; then libca's threads wait for this one (as for a slow pipeline)
MAX_QUEUED_BYTES = 64 * 1024 * 1024
OBJECT = -1  # the status of a queued call, not a monitor event

try:
    from forwarder.sources._ca_queue import CALLBACK, Queue
except ImportError:  # depends on the install: see the module docstring
    CALLBACK = Queue = None


def native_available() -> bool:
    return Queue is not None


def native_queue(max_records: int = MAX_QUEUED, max_bytes: int = MAX_QUEUED_BYTES):
    """The C queue whose ``CALLBACK`` libca calls: values as ca_convert's numpy types."""
    return Queue(
        NUMPY_TYPES,
        {native: np.dtype(t) for native, t in NUMPY_TYPES.items()},
        np.frombuffer,
        max_records,
        max_bytes,
    )


class PyEventQueue:
    """The native queue's ``put``/``take``/``close``/``stats`` contract, in Python."""

    def __init__(self, max_records: int = MAX_QUEUED):
        self._ready = threading.Condition()
        self._items: list[tuple] = []
        self._max = max_records
        self._closed = False
        self._dropped = 0
        self._events = 0

    def put(self, slot: int, item: object) -> bool:
        with self._ready:
            while len(self._items) >= self._max and not self._closed:
                self._ready.wait()
            if self._closed:
                self._dropped += 1
                return False
            self._items.append((slot, item, 0, OBJECT, 0))
            self._events += 1
            self._ready.notify_all()
            return True

    def take(self, timeout: float) -> list[tuple] | None:
        with self._ready:
            if not self._items and not self._closed and timeout > 0:
                self._ready.wait(timeout)
            items, self._items = self._items, []
            self._ready.notify_all()
            if not items and self._closed:
                return None
            return items

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def stats(self) -> dict:
        with self._ready:
            return {"events": self._events, "dropped": self._dropped, "queued": len(self._items)}


class CaDispatcher:
    """The channels' event thread. Channels ``register`` for a slot; libca's callback (or
    ``put``) queues their events; ``_run`` hands each one over on this thread."""

    def __init__(self, queue=None):
        if queue is None:
            queue = native_queue() if native_available() else PyEventQueue()
        self.queue = queue
        self.native = not isinstance(queue, PyEventQueue)
        self._lock = threading.Lock()
        self._channels: dict[int, object] = {}
        self._next_slot = 0
        self._thread: threading.Thread | None = None

    def register(self, channel) -> int:
        """A slot for ``channel``, whose ``native_event(value, ts_ns, status, severity)``
        gets the monitor events queued under it."""
        with self._lock:
            self._next_slot += 1
            self._channels[self._next_slot] = channel
            return self._next_slot

    def unregister(self, slot: int) -> None:
        with self._lock:
            self._channels.pop(slot, None)

    def user_arg(self, slot: int) -> int:
        """ca_create_subscription's user argument for slot's events (native queue only)."""
        return self.queue.user_arg(slot)

    @property
    def callback(self) -> int:
        """The address of the C function libca calls with the native queue's events."""
        return CALLBACK

    def put(self, slot: int, call: Callable[[], None]) -> bool:
        """``call()`` on this thread, after every event queued before it."""
        return self.queue.put(slot, call)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Events queued so far are handed over; later ones are dropped (sources are closed)."""
        self.queue.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        take = self.queue.take
        channels = self._channels
        while True:
            try:
                batch = take(TAKE_TIMEOUT_S)
            except Exception:
                log.exception("taking CA events failed")
                continue
            if batch is None:
                return
            for slot, value, timestamp_ns, status, severity in batch:
                try:
                    if status == OBJECT:
                        value()
                        continue
                    channel = channels.get(slot)
                    if channel is not None:
                        channel.native_event(value, timestamp_ns, status, severity)
                except Exception:
                    log.exception("handling a CA event failed")
