"""Silent PVA subscriptions (issue 12.6) against a real in-process p4p server.

The lost wakeup is injected into the real p4p client: either the exact race (the first
wakeup fires before ``Context.monitor`` has set the subscription's handle) or a
subscription that never drains its queue, which only the watchdog can recover.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from p4p.client import raw
from p4p.client import thread as p4p_thread
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

from forwarder.sources.pva import PvaSourceFactory
from forwarder.update import ConnectionStatus
from helpers.polling import wait_until
from tests.sources.sources_recorder import Recorder

NAME = "SILENT:PV"

pytestmark = pytest.mark.usefixtures("epics_network")


class CountingMetrics:
    """Records when each counter was bumped (the watchdog's re-subscriptions)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.bumps: dict[str, list[float]] = {}

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.bumps.setdefault(name, []).append(time.monotonic())

    def times(self, name: str) -> list[float]:
        with self._lock:
            return list(self.bumps.get(name, []))


def subscribe(factory, name):
    rec = Recorder()
    source = factory.create(name, rec.on_update, rec.on_connection)
    source.start()
    return source, rec


def test_first_wakeup_lost_before_monitor_returns_is_recovered_at_once(monkeypatch, caplog):
    """The benchmark's race, forced: the value must arrive at once, not via the watchdog."""
    original = raw.Context.monitor
    lost = threading.Event()

    def monitor_returning_after_first_wakeup(self, name, handler, request=None, **kws):
        def wakeup():
            handler()  # p4p's _event, while its handle is still None: the wakeup is lost
            lost.set()

        operation = original(self, name, wakeup, request, **kws)
        lost.wait(timeout=10.0)
        return operation

    monkeypatch.setattr(raw.Context, "monitor", monitor_returning_after_first_wakeup)
    metrics = CountingMetrics()
    factory = PvaSourceFactory(metrics, silence_s=60.0)  # the watchdog cannot be what helps
    pv = SharedPV(nt=NTScalar("d"), initial=4.5)
    try:
        with Server(providers=[{NAME: pv}]), caplog.at_level(logging.ERROR, "p4p"):
            source, rec = subscribe(factory, NAME)
            try:
                assert lost.is_set(), "the race was not forced: no wakeup before monitor()"
                assert "Lost Subscription update" in caplog.text
                update = wait_until(
                    rec.last_update,
                    timeout=3.0,
                    what="the value whose wakeup was lost",
                    seen=rec.snapshot,
                )
                pv.post(5.5)
                wait_until(
                    lambda: [u.value for u in rec.updates()] == [4.5, 5.5],
                    timeout=5.0,
                    what="the next value, after the lost one",
                    seen=rec.snapshot,
                )
            finally:
                source.stop()
    finally:
        factory.close()
    assert update.value == 4.5
    assert rec.statuses() == [ConnectionStatus.CONNECTED]
    assert metrics.times("pva_resubscriptions") == []


def test_silent_subscription_is_resubscribed_without_a_second_connected(monkeypatch, caplog):
    """A subscription that never drains: re-created by the watchdog, downstream unchanged."""
    silenced: list[object] = []

    def silence_first_subscription(method):
        def wrapped(self):
            if self.name == NAME and (not silenced or silenced[0] is self):
                if not silenced:
                    silenced.append(self)
                return  # every wakeup and drain of the first subscription is lost
            method(self)

        return wrapped

    monkeypatch.setattr(
        p4p_thread.Subscription,
        "_event",
        silence_first_subscription(p4p_thread.Subscription._event),
    )
    monkeypatch.setattr(
        p4p_thread.Subscription,
        "_handle",
        silence_first_subscription(p4p_thread.Subscription._handle),
    )
    metrics = CountingMetrics()
    factory = PvaSourceFactory(metrics, silence_s=0.5)
    pv = SharedPV(nt=NTScalar("i"), initial=1)
    try:
        with Server(providers=[{NAME: pv}]), caplog.at_level(logging.WARNING, "forwarder"):
            started = time.monotonic()
            source, rec = subscribe(factory, NAME)
            try:
                wait_until(
                    rec.last_update,
                    timeout=5.0,
                    what="a value from the re-created subscription",
                    seen=rec.snapshot,
                )
                delay = time.monotonic() - started
                for n in (2, 3):
                    pv.post(n)
                wait_until(
                    lambda: [u.value for u in rec.updates()] == [1, 2, 3],
                    timeout=5.0,
                    what="values 1, 2, 3 once each",
                    seen=rec.snapshot,
                )
            finally:
                source.stop()
    finally:
        factory.close()
    assert silenced, "no subscription was silenced: the fault was not injected"
    assert delay < 5.0
    assert rec.statuses() == [ConnectionStatus.CONNECTED]
    assert len(metrics.times("pva_resubscriptions")) == 1
    assert any(r.levelno == logging.WARNING and NAME in r.getMessage() for r in caplog.records), (
        caplog.text
    )


def test_absent_pv_is_retried_with_back_off_and_forwarded_once_it_appears():
    """Never-connected PVs are silent too: retries must spread out, not spin."""
    metrics = CountingMetrics()
    factory = PvaSourceFactory(metrics, silence_s=0.2, max_silence_s=1.6)
    name = "ABSENT:PV"
    source, rec = subscribe(factory, name)
    try:
        times = wait_until(
            lambda: (t := metrics.times("pva_resubscriptions")) and len(t) >= 4 and t,
            timeout=10.0,
            what="four re-subscriptions of an absent PV",
        )
        gaps = [b - a for a, b in zip(times[:3], times[1:4], strict=True)]
        # Waits of 0.4, 0.8, 1.6 s follow the first 0.2 s; allow for a busy machine.
        assert gaps[0] >= 0.35 and gaps[1] >= 0.7 and gaps[2] >= 1.4, gaps
        with Server(providers=[{name: SharedPV(nt=NTScalar("d"), initial=7.0)}]):
            wait_until(
                rec.last_update,
                timeout=10.0,
                what="the value once the PV appears",
                seen=rec.snapshot,
            )
        assert rec.statuses()[0] == ConnectionStatus.CONNECTED
        assert rec.statuses().count(ConnectionStatus.CONNECTED) == 1
        assert [u.value for u in rec.updates()] == [7.0]
    finally:
        source.stop()
        factory.close()
