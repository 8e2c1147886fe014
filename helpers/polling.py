"""Waiting without fixed sleeps: poll a condition until a deadline, then say what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """Raised when a condition was not met in time; the message says what and what was seen."""


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    seen: Callable[[], object] | None = None,
) -> T:
    """Call ``condition`` until it returns something truthy and return that.

    On timeout raise WaitTimeout naming ``what`` was awaited and, if ``seen`` is given, what
    was observed instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f"; seen instead: {seen()!r}" if seen is not None else ""
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)
