"""CA sources against a real IOC (pythonSoftIOC subprocess serving sources_test.db).

libca reads its environment once, when pyepics starts it: the module fixture sets the CA
environment before the first CA source is started, and fails if libca is already running.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from forwarder.sources.ca import CaSourceFactory
from forwarder.update import Alarm, ConnectionStatus, Severity
from helpers.polling import wait_until
from helpers.rig.api import EpicsNetwork
from helpers.rig.ports import free_tcp_udp_port
from helpers.rig.processes import ManagedProcess
from tests.sources.sources_recorder import Recorder

RUN_IOC = Path(__file__).with_name("run_test_ioc.py")
TIMEOUT = 20.0


class TestIoc:
    """A test IOC on its own network's CA port; restartable with the same prefix and port."""

    __test__ = False

    def __init__(self, name: str, prefix: str, network: EpicsNetwork):
        self.name, self.prefix = name, prefix
        self.env = {**os.environ, **network.server_env()}
        self.process: ManagedProcess | None = None

    def start(self) -> TestIoc:
        self.process = ManagedProcess(
            self.name, [sys.executable, str(RUN_IOC), self.prefix], env=self.env
        ).start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture(scope="module")
def ca_setup(epics_network):
    from epics import ca

    if ca.libca is not None:
        pytest.fail("libca was started before the CA test environment was set")
    # The spare IOC: a second CA server port on the same network (same repeater port).
    taken = {
        epics_network.ca_server_port,
        epics_network.ca_repeater_port,
        epics_network.pva_server_port,
        epics_network.pva_broadcast_port,
    }
    spare_network = dataclasses.replace(
        epics_network, ca_server_port=free_tcp_udp_port(exclude=taken)
    )
    host = epics_network.host
    with pytest.MonkeyPatch.context() as env:
        env.setenv(
            "EPICS_CA_ADDR_LIST",
            f"{host}:{epics_network.ca_server_port} {host}:{spare_network.ca_server_port}",
        )
        run = uuid.uuid4().hex[:8]
        ioc = TestIoc("ca-source-test-ioc", f"CAT{run}:", epics_network).start()
        spare = TestIoc("ca-source-restart-ioc", f"CAR{run}:", spare_network)
        factory = CaSourceFactory()
        try:
            yield factory, ioc, spare
        finally:
            factory.close()
            spare.stop()
            ioc.stop()


def subscribe(factory, name):
    rec = Recorder()
    source = factory.create(name, rec.on_update, rec.on_connection)
    source.start()
    return source, rec


def wait_for_update(rec, what, timeout=TIMEOUT):
    return wait_until(rec.last_update, timeout=timeout, what=what, seen=rec.snapshot)


EXPECTED = {
    "AI": (np.float64, 15.0),
    "LONG": (np.int32, 42),
    "INT64": (np.float64, 123.0),  # CA has no 64-bit integers: the IOC sends a double
    "ENUM": (np.uint16, 1),  # DBR_ENUM is unsigned 16-bit
    "SHORT1": (np.int16, 7),  # 1-element waveform: a scalar
    "FLOAT1": (np.float32, 2.5),
}


def test_ca_scalars_arrive_with_their_native_numpy_type(ca_setup):
    factory, ioc, _ = ca_setup
    subs = {suffix: subscribe(factory, ioc.prefix + suffix) for suffix in EXPECTED}
    try:
        for suffix, (np_type, expected) in EXPECTED.items():
            source, rec = subs[suffix]
            update = wait_for_update(rec, f"a value of {ioc.prefix}{suffix}")
            assert rec.snapshot()[0] == ("connection", ConnectionStatus.CONNECTED), suffix
            assert type(update.value) is np_type, suffix
            assert update.value == expected, suffix
    finally:
        for source, _ in subs.values():
            source.stop()


def test_ca_alarm_and_timestamp_come_from_the_record(ca_setup):
    factory, ioc, _ = ca_setup
    source, rec = subscribe(factory, ioc.prefix + "AI")
    try:
        update = wait_for_update(rec, "a value of AI")
    finally:
        source.stop()
    assert update.alarm == Alarm(Severity.MINOR, "HIGH", "HIGH")
    # Processed by PINI when the IOC started: within the last minutes, in Unix-epoch ns.
    import time

    assert 0 < time.time_ns() - update.timestamp_ns < 600 * 10**9


def test_ca_arrays_strings_and_empty_waveforms(ca_setup):
    factory, ioc, _ = ca_setup
    names = ["WF", "CHARWF", "STRWF", "STR", "EMPTY"]
    subs = {n: subscribe(factory, ioc.prefix + n) for n in names}
    try:
        got = {n: wait_for_update(subs[n][1], f"a value of {n}").value for n in names}
    finally:
        for source, _ in subs.values():
            source.stop()
    assert got["WF"].dtype == np.float64 and got["WF"].tolist() == [1.0, 2.0, 3.0]  # NORD, not NELM
    assert got["CHARWF"].dtype == np.uint8 and got["CHARWF"].tolist() == [104, 105]
    assert got["STRWF"] == ("a", "b", "c")
    assert got["STR"] == "hello"
    assert isinstance(got["EMPTY"], np.ndarray) and got["EMPTY"].size == 0


def test_ca_sources_of_one_pv_are_independent_and_stop_silences_them(ca_setup):
    factory, ioc, _ = ca_setup
    first, rec1 = subscribe(factory, ioc.prefix + "COUNTER")
    wait_until(lambda: len(rec1.updates()) >= 2, timeout=TIMEOUT, what="2 counter updates")
    # Joining a channel that is already connected: CONNECTED and the latest value first.
    second, rec2 = subscribe(factory, ioc.prefix + "COUNTER")
    try:
        wait_until(lambda: len(rec2.updates()) >= 2, timeout=TIMEOUT, what="2 counter updates")
        events = rec2.snapshot()
        assert events[0] == ("connection", ConnectionStatus.CONNECTED)
        values = [u.value for u in rec2.updates()]
        assert values == sorted(values) and len(set(values)) == len(values)  # in order
        assert threading.current_thread().name not in rec2.callback_threads  # not from start()
        first.stop()
        stopped_at = len(rec1.snapshot())
        seen = len(rec2.updates())
        wait_until(
            lambda: len(rec2.updates()) >= seen + 3,
            timeout=TIMEOUT,
            what="3 more updates on the source still running",
        )
        assert len(rec1.snapshot()) == stopped_at
        second.stop()
        # With every source of the PV gone the channel is cleared; a new source opens it again.
        third, rec3 = subscribe(factory, ioc.prefix + "COUNTER")
        try:
            wait_for_update(rec3, "a value on a fresh channel of the same PV")
            assert rec3.snapshot()[0] == ("connection", ConnectionStatus.CONNECTED)
        finally:
            third.stop()
    finally:
        first.stop()
        second.stop()


def test_ca_pv_appearing_later_and_ioc_restart(ca_setup):
    factory, _, spare = ca_setup
    source, rec = subscribe(factory, spare.prefix + "COUNTER")
    try:
        assert rec.snapshot() == []  # nothing to connect to yet, and start() did not block
        spare.start()
        wait_until(lambda: len(rec.updates()) >= 2, timeout=TIMEOUT, what="counter updates")
        assert [k for k, _ in rec.snapshot()[:2]] == ["connection", "update"]
        spare.stop()
        wait_until(
            lambda: ConnectionStatus.DISCONNECTED in rec.statuses(),
            timeout=TIMEOUT,
            what="DISCONNECTED after the IOC stopped",
            seen=rec.statuses,
        )
        rec.clear()
        spare.start()
        wait_until(
            lambda: rec.updates(), timeout=60, what="an update after restart", seen=rec.snapshot
        )
        events = rec.snapshot()
        assert events[0] == ("connection", ConnectionStatus.CONNECTED)
        assert events[1][0] == "update"
        assert events[1][1].value < 100  # the restarted counter, not a stale value
    finally:
        source.stop()
        spare.stop()


CLOSE_CHECK = """
import sys, threading
from forwarder.sources.ca import CaSourceFactory
from helpers.polling import wait_until
from tests.sources.sources_recorder import Recorder

factory = CaSourceFactory()
rec = Recorder()
factory.create(sys.argv[1], rec.on_update, rec.on_connection).start()
wait_until(lambda: len(rec.updates()) >= 2, timeout=20, what="counter updates")
factory.close()
after_close = len(rec.snapshot())
late = Recorder()
factory.create(sys.argv[1], late.on_update, late.on_connection).start()  # refused, logged
assert not [t.name for t in threading.enumerate() if t.name == "ca-replay"]
assert len(rec.snapshot()) == after_close and late.snapshot() == []
print("OK")
"""


def test_ca_factory_close_ends_callbacks(ca_setup):
    """In a subprocess: closing finalises libca, which this process still needs."""
    _, ioc, _ = ca_setup
    result = subprocess.run(
        [sys.executable, "-c", CLOSE_CHECK, ioc.prefix + "COUNTER"],
        env={**os.environ},
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-2000:]


def test_ca_lost_initial_event_is_fetched(ca_setup, monkeypatch, caplog):
    """The initial value is forwarded even if libca's initial monitor event never arrives."""
    from forwarder.sources import ca as ca_module

    factory, ioc, _ = ca_setup
    name = ioc.prefix + "LONG"
    dropped = []
    original = ca_module._Channel._fan_out  # every monitor event passes here, a fetch not

    def lossy(self, update):
        if self.name == name:
            dropped.append(update.value)  # LONG is static: every event of it is an initial one
            return
        original(self, update)

    monkeypatch.setattr(ca_module._Channel, "_fan_out", lossy)
    monkeypatch.setattr(ca_module, "INITIAL_VALUE_DEADLINE_S", 0.2)
    source, rec = subscribe(factory, name)
    try:
        update = wait_for_update(rec, "the fetched value of LONG")
        assert dropped == [42]
        assert type(update.value) is np.int32 and update.value == 42
        assert update.timestamp_ns > 0
        assert rec.snapshot()[0] == ("connection", ConnectionStatus.CONNECTED)
        assert "fetching it" in caplog.text
    finally:
        source.stop()


def test_ca_channels_opened_back_to_back_all_get_their_initial_value(ca_setup, monkeypatch):
    """Without the safety net, so that an initial value lost by the subscription shows."""
    from forwarder.sources import ca as ca_module

    monkeypatch.setattr(ca_module, "INITIAL_VALUE_DEADLINE_S", 3600.0)
    factory, ioc, _ = ca_setup
    for _ in range(5):
        subs = {suffix: subscribe(factory, ioc.prefix + suffix) for suffix in EXPECTED}
        try:
            for suffix in EXPECTED:
                rec = subs[suffix][1]
                # Connecting is the IOC's search reply, slow on a loaded machine; what is
                # pinned is the value that must follow a connection.
                wait_until(
                    lambda rec=rec: ConnectionStatus.CONNECTED in rec.statuses(),
                    timeout=TIMEOUT,
                    what=f"{suffix} connected",
                    seen=rec.snapshot,
                )
                wait_for_update(rec, f"a value of {suffix} once connected", timeout=5.0)
        finally:
            for source, _ in subs.values():
                source.stop()


def test_ca_callbacks_run_on_the_factorys_event_thread(ca_setup):
    """Updates reach the pipeline on one Python thread, ``ca-events``, not on libca's threads
    (issue 11: entering Python from a libca thread per update cost more than the pipeline);
    thread-local data set in one callback is still there in the next."""
    factory, ioc, _ = ca_setup
    marks = threading.local()
    kept: list[bool] = []
    threads: set[str] = set()

    def on_update(update):
        kept.append(getattr(marks, "seen", False))
        threads.add(threading.current_thread().name)
        marks.seen = True

    source = factory.create(ioc.prefix + "COUNTER", on_update, lambda status, ts: None)
    source.start()
    try:
        wait_until(lambda: len(kept) >= 5, timeout=TIMEOUT, what="5 counter updates")
    finally:
        source.stop()
    assert threads == {"ca-events"}, threads
    assert kept[0] is False and all(kept[1:]), f"thread state not kept: {kept}"


NUMERIC = ["AI", "LONG", "INT64", "ENUM", "SHORT1", "FLOAT1", "WF", "CHARWF", "EMPTY", "COUNTER"]


def test_numeric_events_read_from_libca_equal_pyepics_unpacking(ca_setup):
    """ca_events reads numeric DBR_TIME events itself; each Update must equal, in value,
    dtype, timestamp and alarm, the one ca_convert makes from pyepics' unpacking of the same
    record state (a DBR_TIME get of it, as the forwarder's own fetch does), for every numeric
    record type of the test IOC."""
    from epics import ca

    from forwarder.sources.ca_convert import TIME_OFFSET, update_from_ca

    factory, ioc, _ = ca_setup
    ours = {suffix: subscribe(factory, ioc.prefix + suffix) for suffix in NUMERIC}
    try:
        for suffix in NUMERIC:
            name = ioc.prefix + suffix
            rec = ours[suffix][1]
            wait_for_update(rec, f"a value of {suffix}")
            chid = ca.create_channel(name, connect=True)  # pyepics' one channel of that name
            ftype = ca.field_type(chid) + TIME_OFFSET
            data = ca.get_with_metadata(chid, ftype=ftype, count=0, wait=True, timeout=TIMEOUT)
            value = data.pop("value")
            other = update_from_ca(name, value, {**data, "ftype": ftype})

            def same_event(_rec=rec, _stamp=other.timestamp_ns):
                return [u for u in _rec.updates() if u.timestamp_ns == _stamp]

            (update,) = wait_until(
                same_event,
                timeout=TIMEOUT,
                what=f"the monitor event of {suffix} that the get returned",
                seen=lambda _rec=rec: _rec.updates()[-3:],
            )
            assert type(update.value) is type(other.value), suffix
            assert np.asarray(update.value).dtype == np.asarray(other.value).dtype, suffix
            assert np.array_equal(update.value, other.value), suffix
            assert (update.channel, update.alarm) == (other.channel, other.alarm), suffix
    finally:
        for source, _ in ours.values():
            source.stop()


STATIC = [suffix for suffix in NUMERIC if suffix != "COUNTER"]  # their timestamps stay put

REFERENCE_PATH = """
import json, sys
from forwarder.sources.ca import CaSourceFactory
from helpers.polling import wait_until
from tests.sources.sources_recorder import Recorder

factory = CaSourceFactory(native=False)  # numeric events through ca_events' ctypes callback
recs = {name: Recorder() for name in sys.argv[1:]}
for name, rec in recs.items():
    factory.create(name, rec.on_update, rec.on_connection).start()
for name, rec in recs.items():
    wait_until(rec.last_update, timeout=20, what=f"a value of {name}")
print(json.dumps({
    name: [type(u.value).__name__, str(getattr(u.value, "dtype", "")), repr(u.value),
           u.timestamp_ns, repr(u.alarm), sorted(rec.callback_threads)]
    for name, rec in recs.items() for u in [rec.last_update()]
}))
factory.close()
"""


def test_the_native_queue_gives_the_updates_the_ctypes_path_gives(ca_setup):
    """The same IOC records read by the forwarder's native CA queue (this process) and by the
    ctypes path (a subprocess with CaSourceFactory(native=False)): the same value, type,
    dtype, timestamp and alarm, all delivered on the factory's event thread."""
    import json

    factory, ioc, _ = ca_setup
    names = [ioc.prefix + suffix for suffix in STATIC]
    ours = {name: subscribe(factory, name) for name in names}
    try:
        result = subprocess.run(
            [sys.executable, "-c", REFERENCE_PATH, *names],
            env={**os.environ},
            cwd=Path(__file__).parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        reference = json.loads(result.stdout.strip().splitlines()[-1])
        for name in names:
            rec = ours[name][1]
            u = wait_for_update(rec, f"a value of {name}")
            native = [type(u.value).__name__, str(getattr(u.value, "dtype", "")), repr(u.value),
                      u.timestamp_ns, repr(u.alarm), sorted(rec.callback_threads)]
            assert native == reference[name], name
            assert native[-1] == ["ca-events"], name
    finally:
        for source, _ in ours.values():
            source.stop()
