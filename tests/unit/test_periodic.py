"""The shared timer scheduler: due times, resets, cancels, and its single thread."""

from __future__ import annotations

import threading
import time

from forwarder.periodic import TimerScheduler
from helpers.polling import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make():
    clock = Clock()
    return TimerScheduler(clock=clock), clock


def test_fires_once_at_due_time():
    timers, clock = make()
    fired = []
    timers.set("a", 1.0, lambda: fired.append("a"))
    clock.now = 0.99
    assert timers.run_due() == 0
    clock.now = 1.0
    assert timers.run_due() == 1
    clock.now = 10
    assert timers.run_due() == 0
    assert fired == ["a"]


def test_moving_later_postpones_and_moving_earlier_advances():
    timers, clock = make()
    fired = []
    timers.set("a", 1.0, lambda: fired.append("a"))
    timers.set("a", 3.0, lambda: fired.append("a-late"))
    clock.now = 2.0
    timers.run_due()
    assert fired == []
    timers.set("a", 2.5, lambda: fired.append("a-early"))
    clock.now = 2.6
    timers.run_due()
    clock.now = 5
    timers.run_due()
    assert fired == ["a-early"]


def test_cancel_and_keys_are_independent():
    timers, clock = make()
    fired = []
    timers.set("a", 1.0, lambda: fired.append("a"))
    timers.set("b", 1.0, lambda: fired.append("b"))
    timers.cancel("a")
    clock.now = 2
    timers.run_due()
    assert fired == ["b"]
    assert timers.pending() == 0


def test_callback_may_rearm_itself_and_errors_do_not_stop_others():
    timers, clock = make()
    fired = []

    def tick():
        fired.append(clock.now)
        timers.set("tick", clock.now + 1, tick)

    def broken():
        raise RuntimeError("boom")

    timers.set("tick", 1, tick)
    timers.set("broken", 1, broken)
    for t in (1, 2, 3):
        clock.now = t
        timers.run_due()
    assert fired == [1, 2, 3]


def test_many_resets_keep_one_heap_entry_per_key():
    timers, clock = make()
    for i in range(1000):
        timers.set("a", 1.0 + i, lambda: None)
    assert len(timers._heap) == 1


def test_thread_runs_callbacks_and_stops():
    timers = TimerScheduler()
    fired = threading.Event()
    timers.start()
    try:
        timers.set("x", time.monotonic() + 0.05, fired.set)
        wait_until(fired.is_set, timeout=5, what="the scheduler thread to run a due timer")
    finally:
        timers.stop()
    assert not timers._thread.is_alive()


def test_no_callback_of_a_batch_starts_after_stop():
    """A callback that outlasts stop() (a blocking CA fetch) must not let its batch go on."""
    timers, clock = make()
    fired = []

    def first():
        fired.append("first")
        timers.stop()  # what a stop() during a long first callback amounts to

    timers.set("first", 1, first)
    timers.set("second", 1, lambda: fired.append("second"))
    clock.now = 1
    assert timers.run_due() == 1
    assert fired == ["first"]
