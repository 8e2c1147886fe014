"""A watchdog for PVA subscriptions that stay silent after subscribing.

A subscription that has delivered no value within ``first_s`` of subscribing is handed to
its ``on_silent`` callback (which closes and re-creates it); while it stays silent the wait
doubles up to ``max_s``, so a PV that is absent for good is retried rarely, never in a
tight loop. ``settle`` ends the watch (first value, or the source stopped).

Why silence cannot be told apart from absence here: with ``notify_disconnect`` p4p always
delivers one Disconnected first, for a PV that never connects as for a connected one whose
wakeups were lost, and p4p exposes no channel state. So only a value counts as delivery.
One thread serves every watched subscription.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)

FIRST_S = 2.5  # a connected PV's first value normally arrives within a few ms
MAX_S = 300.0


class SilenceWatchdog:
    """Calls ``on_silent(key)`` for keys not settled by their deadline, with back-off."""

    def __init__(self, first_s: float = FIRST_S, max_s: float = MAX_S):
        self._first_s = first_s
        self._max_s = max_s
        self._cond = threading.Condition()
        # key -> (deadline on the monotonic clock, wait that led to it, callback)
        self._watched: dict[Hashable, tuple[float, float, Callable[[Hashable], bool]]] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, key: Hashable, on_silent: Callable[[Hashable], bool]) -> None:
        """Starts watching ``key``. ``on_silent`` returns True if it re-subscribed (watch on)."""
        with self._cond:
            if self._closed:
                return
            self._watched[key] = (time.monotonic() + self._first_s, self._first_s, on_silent)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pva-silence-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def settle(self, key: Hashable) -> None:
        with self._cond:
            self._watched.pop(key, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._watched.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                due = [(k, w, cb) for k, (d, w, cb) in self._watched.items() if d <= now]
                if not due:
                    deadlines = [d for d, _, _ in self._watched.values()]
                    self._cond.wait(timeout=(min(deadlines) - now) if deadlines else None)
                    continue
            for key, waited, on_silent in due:
                self._expire(key, waited, on_silent)

    def _expire(self, key: Hashable, waited: float, on_silent: Callable[[Hashable], bool]) -> None:
        with self._cond:
            if key not in self._watched:
                return  # settled meanwhile
        try:
            again = on_silent(key)
        except Exception:
            log.exception("PVA silence watchdog callback failed for %s", key)
            again = True
        with self._cond:
            if key not in self._watched:
                return  # settled while re-subscribing: the new subscription delivered
            if not again:
                del self._watched[key]
                return
            wait = min(waited * 2, self._max_s)
            self._watched[key] = (time.monotonic() + wait, wait, on_silent)
