"""FAKE sources: random integers for testing without EPICS.

One timer thread serves every fake source, so thousands of them cost one thread. Each
tick gives every started source a random np.int32 in [0, 100] (the type and range the ESS
forwarder's fake PVs have), stamped with the current time and
NO_ALARM. A new source is reported CONNECTED by the timer thread right after start, before
its first value.
"""

from __future__ import annotations

import logging
import random
import threading
import time

import numpy as np

from forwarder.sources.base import ConnectionCallback, UpdateCallback
from forwarder.sources.delivery import Delivery
from forwarder.update import ConnectionStatus, Update

log = logging.getLogger(__name__)


class FakeSource:
    def __init__(self, factory: FakeSourceFactory, delivery: Delivery):
        self._factory = factory
        self._delivery = delivery

    def start(self) -> None:
        self._factory._add(self._delivery)

    def stop(self) -> None:
        self._delivery.close()
        self._factory._remove(self._delivery)


class FakeSourceFactory:
    """Makes fake sources that all tick on one timer thread every ``period_ms``."""

    def __init__(self, period_ms: int):
        if period_ms <= 0:
            raise ValueError(f"fake update period must be positive, got {period_ms} ms")
        self._period_s = period_ms / 1000
        self._cond = threading.Condition()
        self._active: dict[int, Delivery] = {}
        self._new: list[Delivery] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._random = random.Random()

    def create(
        self, channel: str, on_update: UpdateCallback, on_connection: ConnectionCallback
    ) -> FakeSource:
        return FakeSource(self, Delivery(channel, on_update, on_connection))

    def _add(self, delivery: Delivery) -> None:
        with self._cond:
            if self._closed:
                log.error("FAKE source factory is closed; not starting %s", delivery.channel)
                return
            self._new.append(delivery)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fake-sources", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _remove(self, delivery: Delivery) -> None:
        with self._cond:
            self._active.pop(id(delivery), None)
            if delivery in self._new:
                self._new.remove(delivery)

    def close(self) -> None:
        """Silences every source still running and ends the timer thread."""
        with self._cond:
            self._closed = True
            live = [*self._active.values(), *self._new]
            self._active.clear()
            self._new.clear()
            thread = self._thread
            self._cond.notify()
        for d in live:
            d.close()
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        next_tick = time.monotonic() + self._period_s
        while True:
            with self._cond:
                while not self._closed and not self._new and time.monotonic() < next_tick:
                    self._cond.wait(timeout=max(0.0, next_tick - time.monotonic()))
                if self._closed:
                    return
                new, self._new = self._new, []
                for d in new:
                    self._active[id(d)] = d
                due = time.monotonic() >= next_tick
                active = list(self._active.values()) if due else []
            for d in new:
                d.deliver_connection(ConnectionStatus.CONNECTED)
            if due:
                next_tick = max(next_tick + self._period_s, time.monotonic())
                self._tick(active)

    def _tick(self, deliveries: list[Delivery]) -> None:
        now_ns = time.time_ns()
        for d in deliveries:
            value = np.int32(self._random.randint(0, 100))
            d.deliver_update(Update(channel=d.channel, value=value, timestamp_ns=now_ns))
