"""Throttled logging, so a fault that repeats many times a second stays readable in the log.

The first line of a kind goes out at once (an operator must see a fault start); after that,
at most one line per interval, the newest of its kind, carrying how many more it stands for.
A summary is due at the end of each interval even if the fault then stops, so no occurrence
goes uncounted. A "kind" is a key the caller chooses from what stays the same (a client role
and an error code, say), never the exact text, which varies from one occurrence to the next.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

Schedule = Callable[[float, Callable[[], None]], object]


def daemon_timer(delay_s: float, action: Callable[[], None]) -> threading.Timer:
    """Run ``action`` once after ``delay_s`` on a daemon thread (never holds up exit)."""
    timer = threading.Timer(delay_s, action)
    timer.daemon = True
    timer.start()
    return timer


@dataclass
class _Kind:
    window_end: float
    pending: int = 0  # occurrences since the last line of this kind, not logged yet
    newest: tuple = ()  # (level, msg, args, exc_info) of the newest of them
    summary_due: bool = False


class ThrottledLog:
    """At most one line per kind per ``interval_s``, each saying how many it stands for."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule = daemon_timer,
    ):
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._schedule = schedule
        self._lock = threading.Lock()
        self._kinds: dict[Hashable, _Kind] = {}

    def log(self, key: Hashable, level: int, msg: str, *args: object, exc_info=None) -> None:
        if exc_info is True:  # capture now: a summary is written later, on another thread
            exc_info = sys.exc_info()
        summary_in = None
        with self._lock:
            now = self._clock()
            kind = self._kinds.get(key)
            suppressed = kind is not None and now < kind.window_end
            if suppressed:
                kind.pending += 1
                kind.newest = (level, msg, args, exc_info)
                if not kind.summary_due:
                    kind.summary_due = True
                    summary_in = kind.window_end - now
            else:
                more = kind.pending if kind is not None else 0
                self._kinds[key] = _Kind(window_end=now + self._interval)
        if not suppressed:
            self._emit(level, msg, args, exc_info, more)
        elif summary_in is not None:
            self._schedule(summary_in, lambda: self._summarise(key, kind))

    def flush(self) -> None:
        """Write every pending summary now (at shutdown, say)."""
        with self._lock:
            due = [(key, kind) for key, kind in self._kinds.items() if kind.pending]
        for key, kind in due:
            self._summarise(key, kind)

    def _summarise(self, key: Hashable, kind: _Kind) -> None:
        with self._lock:
            if self._kinds.get(key) is not kind or not kind.pending:
                return  # already summarised, or a newer window took over
            pending, (level, msg, args, exc_info) = kind.pending, kind.newest
            self._kinds[key] = _Kind(window_end=self._clock() + self._interval)
        self._emit(level, msg, args, exc_info, pending - 1)

    def _emit(self, level: int, msg: str, args: tuple, exc_info, more: int) -> None:
        if more:
            msg = f"{msg} ({more} more in the last {self._interval:g} s)"
        self._log.log(level, msg, *args, exc_info=exc_info)


class RateLimitedLog:
    """One kind of error on one logger: ``error()`` throttled like ThrottledLog."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule = daemon_timer,
    ):
        self._throttle = ThrottledLog(logger, interval_s, clock, schedule)

    def error(self, msg: str, *args: object, exc_info=None) -> None:
        self._throttle.log(None, logging.ERROR, msg, *args, exc_info=exc_info)
