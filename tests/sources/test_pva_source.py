"""PVA sources against a real in-process p4p server (SharedPVs on isolated ports)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from p4p.nt import NTEnum, NTScalar, NTTable
from p4p.server import Server
from p4p.server.thread import SharedPV

from forwarder.sources.pva import PvaSourceFactory
from forwarder.update import Alarm, ConnectionStatus, Severity, Table
from helpers.polling import wait_until
from tests.sources.sources_recorder import Recorder

TIMEOUT = 20.0


@pytest.fixture
def factory(epics_network):
    f = PvaSourceFactory()
    yield f
    f.close()


def serve(pvs: dict[str, SharedPV]) -> Server:
    return Server(providers=[pvs])


def subscribe(factory, name):
    rec = Recorder()
    source = factory.create(name, rec.on_update, rec.on_connection)
    source.start()
    return source, rec


SCALARS = {
    "?": (True, np.bool_),
    "b": (-5, np.int8),
    "B": (200, np.uint8),
    "h": (-300, np.int16),
    "H": (60000, np.uint16),
    "i": (-70000, np.int32),
    "I": (4_000_000_000, np.uint32),
    "l": (-(2**40), np.int64),
    "L": (2**63 + 5, np.uint64),
    "f": (2.5, np.float32),
    "d": (1.25, np.float64),
}


def test_pva_scalars_follow_the_nt_type_code(factory):
    pvs = {
        f"T:S{i}": SharedPV(nt=NTScalar(c), initial=v)
        for i, (c, (v, _)) in enumerate(SCALARS.items())
    }
    pvs["T:STR"] = SharedPV(nt=NTScalar("s"), initial="text")
    with serve(pvs):
        subs = {name: subscribe(factory, name) for name in pvs}
        try:
            for name, (_, rec) in subs.items():
                wait_until(rec.last_update, timeout=TIMEOUT, what=f"a value of {name}")
                assert rec.snapshot()[0] == ("connection", ConnectionStatus.CONNECTED)
        finally:
            for source, _ in subs.values():
                source.stop()
    for i, (code, (expected, np_type)) in enumerate(SCALARS.items()):
        value = subs[f"T:S{i}"][1].last_update().value
        assert type(value) is np_type, code
        assert value == expected, code
    assert subs["T:STR"][1].last_update().value == "text"


def test_pva_arrays_enums_and_tables(factory):
    pvs = {
        "T:AD": SharedPV(nt=NTScalar("ad"), initial=[1.0, 2.0, 3.0]),
        "T:AI1": SharedPV(nt=NTScalar("ai"), initial=[7]),
        "T:AEMPTY": SharedPV(nt=NTScalar("aH"), initial=[]),
        "T:AS": SharedPV(nt=NTScalar("as"), initial=["x", "y"]),
        "T:ENUM": SharedPV(nt=NTEnum(), initial={"index": 1, "choices": ["a", "b"]}),
        "T:TABLE": SharedPV(
            nt=NTTable([("pos", "d"), ("n", "i"), ("label", "s")]),
            initial=[{"pos": 1.5, "n": 2, "label": "p"}, {"pos": 2.5, "n": 3, "label": "q"}],
        ),
    }
    with serve(pvs):
        subs = {name: subscribe(factory, name) for name in pvs}
        try:
            got = {
                name: wait_until(rec.last_update, timeout=TIMEOUT, what=f"a value of {name}").value
                for name, (_, rec) in subs.items()
            }
        finally:
            for source, _ in subs.values():
                source.stop()
    assert got["T:AD"].dtype == np.float64 and got["T:AD"].tolist() == [1.0, 2.0, 3.0]
    assert type(got["T:AI1"]) is np.int32 and got["T:AI1"] == 7
    assert isinstance(got["T:AEMPTY"], np.ndarray) and got["T:AEMPTY"].size == 0
    assert got["T:AEMPTY"].dtype == np.uint16
    assert got["T:AS"] == ("x", "y")
    assert type(got["T:ENUM"]) is np.int32 and got["T:ENUM"] == 1
    table = got["T:TABLE"]
    assert isinstance(table, Table) and list(table.columns) == ["pos", "n", "label"]
    assert table.columns["pos"].tolist() == [1.5, 2.5]
    assert table.columns["n"].dtype == np.int32
    assert table.columns["label"].tolist() == ["p", "q"]


def test_pva_alarm_and_exact_timestamp(factory):
    pv = SharedPV(nt=NTScalar("d"), initial=0.0)
    with serve({"T:ALARM": pv}):
        source, rec = subscribe(factory, "T:ALARM")
        try:
            wait_until(rec.last_update, timeout=TIMEOUT, what="the initial value")
            pv.post(
                {
                    "value": 30.0,
                    "alarm": {"severity": 2, "status": 3, "message": "HIHI"},
                    "timeStamp": {"secondsPastEpoch": 1_700_000_000, "nanoseconds": 123_456_789},
                }
            )
            update = wait_until(
                lambda: next((u for u in rec.updates() if u.value == 30.0), None),
                timeout=TIMEOUT,
                what="the alarmed value",
                seen=rec.snapshot,
            )
        finally:
            source.stop()
    assert update.alarm == Alarm(Severity.MAJOR, "HIHI", "HIHI")
    assert update.timestamp_ns == 1_700_000_000_123_456_789


def test_pva_pv_appearing_later_and_server_restart(factory):
    source, rec = subscribe(factory, "T:LATE")
    try:
        pv = SharedPV(nt=NTScalar("i"), initial=1)
        with serve({"T:LATE": pv}):
            wait_until(rec.last_update, timeout=TIMEOUT, what="the value once served")
            assert rec.snapshot()[0] == ("connection", ConnectionStatus.CONNECTED)
        wait_until(
            lambda: ConnectionStatus.DISCONNECTED in rec.statuses(),
            timeout=TIMEOUT,
            what="DISCONNECTED after the server stopped",
            seen=rec.snapshot,
        )
        rec.clear()
        with serve({"T:LATE": SharedPV(nt=NTScalar("i"), initial=2)}):
            wait_until(rec.last_update, timeout=60, what="a value after restart", seen=rec.snapshot)
        events = rec.snapshot()
        assert events[0] == ("connection", ConnectionStatus.CONNECTED)
        assert events[1][0] == "update" and events[1][1].value == 2
    finally:
        source.stop()


def test_pva_stop_silences_one_source_and_close_all(factory):
    pv = SharedPV(nt=NTScalar("i"), initial=0)
    with serve({"T:COUNT": pv}):
        first, rec1 = subscribe(factory, "T:COUNT")
        second, rec2 = subscribe(factory, "T:COUNT")
        try:
            wait_until(rec1.last_update, timeout=TIMEOUT, what="first source's value")
            wait_until(rec2.last_update, timeout=TIMEOUT, what="second source's value")
            first.stop()
            stopped_at = len(rec1.snapshot())
            for n in range(1, 4):
                pv.post(n)
                wait_until(
                    lambda n=n: rec2.last_update().value == n,
                    timeout=TIMEOUT,
                    what=f"value {n} on the running source",
                )
            assert len(rec1.snapshot()) == stopped_at
            factory.close()
            closed_at = len(rec2.snapshot())
            pv.post(99)
            third, rec3 = subscribe(factory, "T:COUNT")  # a closed factory refuses politely
            assert rec3.snapshot() == []
            third.stop()
            assert len(rec2.snapshot()) == closed_at
        finally:
            first.stop()
            second.stop()


def test_pvxs_wakeup_threads_keep_their_python_thread_state(factory, monkeypatch):
    """A PVXS thread keeps one Python thread state across a subscription's wakeups (issue
    11). Thread-local data lives in the thread state: a marker set in one wakeup must still
    be there in the next one on that thread."""
    from p4p.client.thread import Subscription

    pvs = {
        "T:FIRST": SharedPV(nt=NTScalar("d"), initial=0.0),
        "T:TICK": SharedPV(nt=NTScalar("d"), initial=0.0),
    }
    with serve(pvs):
        first, rec = subscribe(factory, "T:FIRST")  # the context exists from here on
        wait_until(rec.last_update, timeout=TIMEOUT, what="a value of T:FIRST")
        marks = threading.local()
        kept: list[bool] = []
        wakeup = Subscription._event

        def recording_wakeup(self):
            wakeup(self)
            kept.append(getattr(marks, "seen", False))
            marks.seen = True

        monkeypatch.setattr(Subscription, "_event", recording_wakeup)
        source, rec = subscribe(factory, "T:TICK")
        try:
            for value in range(1, 6):
                wait_until(
                    lambda v=value: (u := rec.last_update()) is not None and u.value == v - 1,
                    timeout=TIMEOUT,
                    what=f"T:TICK = {value - 1}",
                )
                pvs["T:TICK"].post(float(value))
            wait_until(lambda: len(kept) >= 5, timeout=TIMEOUT, what="5 wakeups of T:TICK")
        finally:
            source.stop()
            first.stop()
    # The first wakeup on each PVXS thread sees no marker; later ones must.
    assert kept[-1] and kept.count(False) <= 2, f"thread state not kept: {kept}"


class BlockedRecorder(Recorder):
    """A Recorder whose first update holds the p4p worker until ``release`` is set, as a
    forwarder starved of CPU would."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()
        self.holding = threading.Event()

    def on_update(self, update):
        super().on_update(update)
        if not self.holding.is_set():
            self.holding.set()
            self.release.wait(TIMEOUT)


@pytest.mark.parametrize(("queue_size", "all_arrive"), [(None, True), (4, False)])
def test_pva_updates_that_wait_while_the_forwarder_stalls_all_arrive_in_order(
    epics_network, queue_size, all_arrive
):
    """The default queue keeps 40 updates posted during a stall; PVXS's own default of 4
    squashes them into a few, which shows the stall is real.

    A marker PV on the same connection, posted after the 40 and delivered on another p4p
    worker, tells when the client has read them all. (Not a second client of the same PV:
    p4p's SharedPV posts one copy to all subscribers, and a squash in one subscriber's server
    queue overwrites it in the others'.)
    """
    stalled = SharedPV(nt=NTScalar("i"), initial=0)
    marker = SharedPV(nt=NTScalar("i"), initial=0)
    factory = PvaSourceFactory(**({} if queue_size is None else {"queue_size": queue_size}))
    with serve({"T:STALL": stalled, "T:MARK": marker}):
        rec = BlockedRecorder()
        source = factory.create("T:STALL", rec.on_update, rec.on_connection)
        mark_source, mark = subscribe(factory, "T:MARK")
        source.start()
        try:
            wait_until(rec.holding.is_set, timeout=TIMEOUT, what="the first update, held")
            wait_until(mark.last_update, timeout=TIMEOUT, what="the marker's first value")
            for n in range(1, 41):
                stalled.post(n)
            marker.post(1)
            wait_until(
                lambda: mark.last_update().value == 1, timeout=TIMEOUT, what="the marker's 1"
            )
            rec.release.set()
            wait_until(
                lambda: rec.updates()[-1].value == 40,
                timeout=TIMEOUT,
                what="the last value posted, 40",
                seen=lambda: [int(u.value) for u in rec.updates()],
            )
        finally:
            rec.release.set()
            source.stop()
            mark_source.stop()
            factory.close()
    values = [int(u.value) for u in rec.updates()]
    if all_arrive:
        assert values == list(range(41))
    else:
        assert len(values) < 41, "PVXS squashed nothing: the stall did not fill its queue"
        assert values == sorted(set(values))
