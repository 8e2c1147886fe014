"""A timer thread for many keyed timers: periodic re-sends, grace periods, CA value checks.

Thousands of streams each wanting "call me in P ms unless something happens first" would be
thousands of threads with ``threading.Timer``. Instead a single heap holds at most one live
entry per key; moving a timer later (the common case: a new update arrives) only updates a
dict, and the heap entry is re-pushed lazily when it comes due.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)

TimerCallback = Callable[[], None]


class TimerScheduler:
    """Runs each key's callback once at its due time (monotonic seconds) unless reset first.

    Callbacks run on the scheduler thread, never under the scheduler's lock, so they may call
    ``set``/``cancel`` (e.g. to re-arm themselves). ``run_due`` is the whole algorithm without
    the thread, so tests can drive it with a fake clock.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._timers: dict[Hashable, tuple[float, TimerCallback]] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._queued: dict[Hashable, int] = {}  # key -> seq of its one valid heap entry
        self._queued_due: dict[Hashable, float] = {}
        self._seq = itertools.count()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        """The scheduler's clock; due times are on this scale."""
        return self._clock()

    def set(self, key: Hashable, due: float, callback: TimerCallback) -> None:
        """(Re)arm the timer for ``key``; replaces any earlier setting of it."""
        with self._lock:
            self._timers[key] = (due, callback)
            queued_due = self._queued_due.get(key)
            if queued_due is not None and queued_due <= due:
                return  # the existing heap entry will find the later due time and re-push
            self._push(key, due)
            if self._heap[0][2] == key:
                self._lock.notify()

    def cancel(self, key: Hashable) -> None:
        with self._lock:
            self._timers.pop(key, None)

    def pending(self) -> int:
        with self._lock:
            return len(self._timers)

    def _push(self, key: Hashable, due: float) -> None:
        seq = next(self._seq)
        self._queued[key] = seq
        self._queued_due[key] = due
        heapq.heappush(self._heap, (due, seq, key))

    def _collect_due(self, now: float) -> list[TimerCallback]:
        fired = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            if self._queued.get(key) != seq:
                continue  # superseded by an earlier-due entry for the same key
            del self._queued[key]
            del self._queued_due[key]
            timer = self._timers.get(key)
            if timer is None:
                continue  # cancelled
            due, callback = timer
            if due > now:
                self._push(key, due)  # was moved later since this entry was pushed
                continue
            del self._timers[key]
            fired.append(callback)
        return fired

    def run_due(self, now: float | None = None) -> int:
        """Run every callback due at ``now`` (default: the clock); return how many ran.

        Checks for ``stop`` before each callback: one that blocks (a CA fetch) must not let
        the rest of its batch start after ``stop`` gave up waiting for the thread.
        """
        with self._lock:
            fired = self._collect_due(self._clock() if now is None else now)
        ran = 0
        for callback in fired:
            if self._stopped:
                break
            ran += 1
            try:
                callback()
            except Exception:
                log.exception("Error in a timer callback")
        return ran

    # --- thread ----------------------------------------------------------------------------

    def start(self, name: str = "stream-timers") -> None:
        """Start the thread (once); ``name`` tells schedulers apart in a thread dump."""
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                wait = self._heap[0][0] - self._clock() if self._heap else None
                if wait is None or wait > 0:
                    self._lock.wait(timeout=wait)
                    continue
            self.run_due()

    def stop(self) -> None:
        """Stop the thread; no callback starts after this returns (one running may finish)."""
        with self._lock:
            self._stopped = True
            self._timers.clear()
            self._lock.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
