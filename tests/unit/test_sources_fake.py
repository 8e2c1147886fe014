"""FAKE sources: one timer thread, CONNECTED first, random np.int32, prompt stop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from forwarder.sources.fake import FakeSourceFactory
from forwarder.update import NO_ALARM, ConnectionStatus
from helpers.polling import wait_until
from tests.sources.sources_recorder import Recorder


@pytest.fixture
def factory():
    f = FakeSourceFactory(period_ms=20)
    yield f
    f.close()


def test_source_fake_connects_then_ticks_random_int32(factory):
    rec = Recorder()
    source = factory.create("FAKE:1", rec.on_update, rec.on_connection)
    source.start()
    try:
        wait_until(lambda: len(rec.updates()) >= 3, timeout=10, what="3 fake updates")
    finally:
        source.stop()
    assert rec.snapshot()[0] == ("connection", ConnectionStatus.CONNECTED)
    assert rec.statuses() == [ConnectionStatus.CONNECTED]
    for u in rec.updates():
        assert type(u.value) is np.int32 and 0 <= u.value <= 100
        assert u.alarm == NO_ALARM and u.channel == "FAKE:1" and u.timestamp_ns > 0


def test_source_fake_many_sources_share_one_thread_and_stop_is_final(factory):
    before = threading.active_count()
    recs = [Recorder() for _ in range(2000)]
    sources = [
        factory.create(f"FAKE:{i}", r.on_update, r.on_connection) for i, r in enumerate(recs)
    ]
    for s in sources:
        s.start()
    wait_until(
        lambda: all(r.updates() for r in recs), timeout=20, what="an update on every fake PV"
    )
    assert threading.active_count() - before <= 1
    for s in sources[1:]:
        s.stop()
    counts = [len(r.snapshot()) for r in recs]
    seen = len(recs[0].updates())
    wait_until(lambda: len(recs[0].updates()) >= seen + 3, timeout=10, what="3 more ticks")
    assert [len(r.snapshot()) for r in recs[1:]] == counts[1:]
    sources[0].stop()


def test_source_fake_close_stops_the_thread_and_rejects_bad_period():
    f = FakeSourceFactory(period_ms=10)
    rec = Recorder()
    f.create("FAKE:X", rec.on_update, rec.on_connection).start()
    wait_until(rec.updates, timeout=10, what="a fake update")
    f.close()
    assert not any(t.name == "fake-sources" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(ValueError, match="positive"):
        FakeSourceFactory(period_ms=0)
