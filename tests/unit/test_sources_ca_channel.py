"""The CA channel's libca-free parts: conversion failures and the initial-value safety net."""

from __future__ import annotations

import logging
import threading

import numpy as np

from forwarder.periodic import TimerScheduler
from forwarder.sources import ca as ca_module
from forwarder.sources import ca_events
from forwarder.sources.ca import _Channel
from forwarder.sources.delivery import Delivery
from forwarder.update import ConnectionStatus
from helpers.polling import wait_until

TIME_LONG = 5 + 14
META = {
    "ftype": TIME_LONG,
    "posixseconds": 1_700_000_000,
    "nanoseconds": 5,
    "status": 0,
    "severity": 0,
}


class FakeCa:
    """The bits of epics.ca the channel calls, with a get that answers from a dict."""

    DEFAULT_SUBSCRIPTION_MASK = 5

    def __init__(self, answer):
        self.answer = answer
        self.gets = []

    def use_initial_context(self):
        pass

    def flush_io(self):
        pass

    def field_type(self, chid):
        return 5

    def create_subscription(self, chid, ftype, count, callback):
        return (None, callback, 1)

    def clear_subscription(self, event_id):
        pass

    def clear_channel(self, chid):
        pass

    def get_with_metadata(self, chid, ftype, count, wait, timeout):
        self.gets.append((chid, ftype, count))
        return dict(self.answer) if self.answer is not None else None


class Seen:
    def __init__(self):
        self.lock = threading.Lock()
        self.events = []

    def on_update(self, update):
        with self.lock:
            self.events.append(("update", update))

    def on_connection(self, status, timestamp_ns):
        with self.lock:
            self.events.append(("connection", status))

    def updates(self):
        with self.lock:
            return [e for kind, e in self.events if kind == "update"]


def channel_with(monkeypatch, answer):
    fake = FakeCa(answer)
    monkeypatch.setattr(ca_module, "_ca", lambda: fake)
    # Numeric types subscribe through ca_events, straight on libca: no event comes here.
    monkeypatch.setattr(ca_events, "subscribe", lambda ca, chid, ftype, mask, h: (None, h, 1))
    monkeypatch.setattr(ca_module, "INITIAL_VALUE_DEADLINE_S", 0.05)
    timers = TimerScheduler()
    timers.start()
    ch = _Channel("PV:X", timers)
    seen = Seen()
    ch._deliveries.append(Delivery("PV:X", seen.on_update, seen.on_connection))
    return fake, timers, ch, seen


def test_a_lost_initial_event_is_fetched_once(monkeypatch):
    fake, timers, ch, seen = channel_with(monkeypatch, {"value": 42, **META})
    try:
        ch._on_connection(pvname="PV:X", chid=7, conn=True)  # the initial event never comes
        update = wait_until(lambda: (seen.updates() or [None])[0], timeout=5, what="a fetch")
        assert fake.gets == [(7, TIME_LONG, 0)]
        assert type(update.value) is np.int32 and update.value == 42
        assert update.timestamp_ns == 1_700_000_000 * 1_000_000_000 + 5
        assert seen.events[0] == ("connection", ConnectionStatus.CONNECTED)
    finally:
        timers.stop()


def test_no_fetch_when_the_initial_event_arrives(monkeypatch):
    fake, timers, ch, seen = channel_with(monkeypatch, {"value": 1, **META})
    try:
        ch._on_connection(pvname="PV:X", chid=7, conn=True)
        ch._on_value(value=42, **META)
        ch.check_value(ch._generation)  # what the timer runs, whenever it runs
        assert fake.gets == []
        assert [u.value for u in seen.updates()] == [42]
    finally:
        timers.stop()


def test_no_fetch_for_an_old_connection_or_a_closed_channel(monkeypatch):
    fake, timers, ch, seen = channel_with(monkeypatch, {"value": 1, **META})
    try:
        ch._on_connection(pvname="PV:X", chid=7, conn=True)
        old = ch._generation
        ch._on_connection(pvname="PV:X", chid=7, conn=False)
        ch.check_value(old)
        ch._on_connection(pvname="PV:X", chid=7, conn=True)
        ch.close()
        ch.check_value(ch._generation)
        assert fake.gets == [] and seen.updates() == []
    finally:
        timers.stop()


def test_a_conversion_failure_is_logged_without_sources(caplog):
    ch = _Channel("PV:Y")
    with caplog.at_level(logging.ERROR, logger="forwarder.sources.ca"):
        ch._on_value(value=1, **{**META, "ftype": 99})
    assert "PV:Y" in caplog.text and "cannot convert" in caplog.text


def test_a_channels_events_reach_its_sources_in_libcas_order(monkeypatch):
    """Connection changes and values share the event thread's queue: a value libca gave
    before a disconnect is delivered before DISCONNECTED, never after it."""
    from forwarder.sources.ca_dispatch import CaDispatcher, PyEventQueue

    fake = FakeCa(None)
    monkeypatch.setattr(ca_module, "_ca", lambda: fake)
    monkeypatch.setattr(ca_events, "subscribe", lambda ca, chid, ftype, mask, h: (None, h, 1))
    events = CaDispatcher(PyEventQueue())
    ch = _Channel("PV:X", None, events)
    seen = Seen()
    ch._deliveries.append(Delivery("PV:X", seen.on_update, seen.on_connection))
    # What libca's threads do, before the event thread runs anything.
    ch._on_connection(pvname="PV:X", chid=7, conn=True)
    ch._on_value(value="a string", **{**META, "ftype": 14})
    ch._on_connection(pvname="PV:X", chid=7, conn=False)
    assert seen.events == []
    events.start()
    try:
        wait_until(lambda: len(seen.events) == 3, timeout=5, what="3 events", seen=seen.events)
    finally:
        events.close()
    assert [kind if kind == "update" else e for kind, e in seen.events] == [
        ConnectionStatus.CONNECTED,
        "update",
        ConnectionStatus.DISCONNECTED,
    ]


def test_a_connection_still_queued_when_the_channel_closes_does_not_subscribe(monkeypatch):
    """The event thread may run a connection change after close() cleared the channel: it
    must not subscribe on the cleared chid."""
    from forwarder.sources.ca_dispatch import CaDispatcher, PyEventQueue

    fake = FakeCa(None)
    monkeypatch.setattr(ca_module, "_ca", lambda: fake)
    subscribed = []
    monkeypatch.setattr(
        ca_events, "subscribe", lambda ca, chid, ftype, mask, h: subscribed.append(chid)
    )
    events = CaDispatcher(PyEventQueue())
    ch = _Channel("PV:X", None, events)
    ch._on_connection(pvname="PV:X", chid=7, conn=True)  # libca: connected, queued
    ch.close()
    ran = []
    events.put(0, lambda: ran.append(True))
    events.start()
    try:
        wait_until(lambda: ran, timeout=5, what="the queued connection change to have run")
    finally:
        events.close()
    assert subscribed == []
