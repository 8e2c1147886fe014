"""Contract tests of the rig's EPICS side: the real IOC and table server, over CA and PVA.

They pin down what the forwarder will see for every test record (types, values, alarms,
disconnects), so that a forwarder test failing later is known not to be the rig's fault.
Every server comes from the ``rig``, so each backend's IOC and table server are tested.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from helpers import epics_helpers as eh
from helpers.polling import wait_until
from helpers.pvs import BY_SUFFIX, EMPTY_TABLE, TABLE, TABLE_INITIAL_VALUES, TEST_PVS, TestPv
from helpers.rig.ports import allocate_epics_network

pytestmark = pytest.mark.rig


PREFIX = f"RIG{os.getpid()}:"
TIMEOUT = 15.0  # deadline for anything a test waits for
RECONNECT_TIMEOUT = 40.0  # CA searches back off; a reconnect may take a while
# p4p type codes of the numpy dtypes in helpers.pvs.
PVA_CODES = {"float64": "d", "float32": "f", "int64": "l", "int32": "i", "int16": "h", "int8": "b"}
# EPICS alarm status numbers (epicsAlarmCondition) as CA reports them.
CA_STATUS = {"NO_ALARM": 0, "HIHI": 3, "HIGH": 4, "LOLO": 5, "LOW": 6}


# -- fixtures (module-local; the suite's shared ones live in conftest.py) ---------------------


@pytest.fixture(scope="module")
def _network(epics_network):
    """The rig's EPICS network, which this process's CA/PVA clients use."""
    yield epics_network
    eh.close_pva_contexts()


@pytest.fixture(scope="module")
def _ioc(rig, _network):
    ioc = rig.ioc(PREFIX)
    ioc.start()
    yield ioc
    ioc.stop()


@pytest.fixture(scope="module")
def _tables(rig, _network, _ioc):
    """The table server, on the same network as the running IOC (as in the suite)."""
    server = rig.table_server(PREFIX)
    server.start()
    yield server
    server.stop()


# -- helpers ----------------------------------------------------------------------------------


def same(actual, expected) -> bool:
    """Whether a CA/PVA value equals an expected value of helpers.pvs (scalar or sequence)."""
    if isinstance(expected, str):
        return actual == expected
    if isinstance(expected, list) and expected and isinstance(expected[0], str):
        return [str(a) for a in np.atleast_1d(actual)] == expected
    a, e = np.atleast_1d(np.asarray(actual)), np.atleast_1d(np.asarray(expected))
    return a.shape == e.shape and np.array_equal(a.astype(np.float64), e.astype(np.float64))


def latest_is(monitor, expected):
    """Condition: the newest update of a CA or PVA monitor has value ``expected``."""
    return lambda: bool(monitor.updates) and same(monitor.updates[-1].value, expected)


def check_pva_type(pv: TestPv, reading: eh.PvaReading) -> None:
    assert reading.type_id.startswith(f"epics:nt/{pv.pva_id}:"), reading.type_id
    if pv.pva_id == "NTEnum":
        return
    code = reading.raw.type()["value"]
    prefix = "a" if pv.is_array else ""
    expected = PVA_CODES[pv.pva_dtype] if pv.pva_dtype else "s"
    assert code == prefix + expected, f"{pv.suffix}: PVA type code {code}"


def restore(network, ioc, pv: TestPv) -> None:
    eh.pva_put(network, ioc.pv(pv.suffix), pv.initial)


# -- get --------------------------------------------------------------------------------------


@pytest.mark.parametrize("pv", TEST_PVS, ids=lambda p: p.suffix)
def test_ca_get_gives_initial_value_type_and_no_alarm(_ioc, pv):
    reading = eh.ca_get(_ioc.pv(pv.suffix))
    assert reading.ftype == f"time_{pv.ca_type}"
    assert np.size(reading.value) == pv.ca_count
    assert same(reading.value, pv.initial), reading.value
    assert (reading.severity, reading.status) == (0, 0)
    assert abs(reading.timestamp - time.time()) < 3600, "IOC timestamp is not the wall clock"


@pytest.mark.parametrize("pv", TEST_PVS, ids=lambda p: p.suffix)
def test_pva_get_gives_initial_value_type_and_no_alarm(_network, _ioc, pv):
    reading = eh.pva_get(_network, _ioc.pv(pv.suffix))
    check_pva_type(pv, reading)
    assert same(reading.value, pv.initial), reading.value
    assert (reading.severity, reading.message) == (0, "")
    assert abs(reading.timestamp - time.time()) < 3600


def test_enum_choices_over_ca_and_pva(_network, _ioc):
    ctrl = eh._ca_pv(_ioc.pv("MBBO"), TIMEOUT).get_ctrlvars()
    assert list(ctrl["enum_strs"][:4]) == ["Off", "Low", "High", "Fault"]
    reading = eh.pva_get(_network, _ioc.pv("BO"))
    assert list(reading.raw["value.choices"]) == ["Closed", "Open"]


# -- put and monitor --------------------------------------------------------------------------


@pytest.mark.parametrize("pv", TEST_PVS, ids=lambda p: p.suffix)
def test_put_over_ca_and_pva_is_seen_by_both_monitors(_network, _ioc, pv):
    name = _ioc.pv(pv.suffix)
    ca_mon, pva_mon = eh.ca_monitor(name), eh.pva_monitor(_network, name)
    try:
        for mon in (ca_mon, pva_mon):
            wait_until(
                latest_is(mon, pv.initial),
                timeout=TIMEOUT,
                what=f"first update of {name} on {type(mon).__name__}",
                seen=mon.values,
            )
        first, second = pv.puts
        eh.ca_put(name, first)
        for mon in (ca_mon, pva_mon):
            wait_until(
                latest_is(mon, first),
                timeout=TIMEOUT,
                what=f"{name}={first!r} (CA put) on {type(mon).__name__}",
                seen=mon.values,
            )
        assert same(eh.pva_get(_network, name).value, first)
        eh.pva_put(_network, name, second)
        for mon in (ca_mon, pva_mon):
            wait_until(
                latest_is(mon, second),
                timeout=TIMEOUT,
                what=f"{name}={second!r} (PVA put) on {type(mon).__name__}",
                seen=mon.values,
            )
        assert same(eh.ca_get(name).value, second)
        assert ca_mon.updates[-1].ftype == f"time_{pv.ca_type}"
        check_pva_type(pv, pva_mon.updates[-1])
    finally:
        ca_mon.close()
        pva_mon.close()
        restore(_network, _ioc, pv)


ALARM_STEPS = [  # value put to DOUBLE -> (severity, alarm status name)
    (15.0, 1, "HIGH"),
    (25.0, 2, "HIHI"),
    (-15.0, 1, "LOW"),
    (-25.0, 2, "LOLO"),
    (0.0, 0, "NO_ALARM"),
]


@pytest.mark.parametrize("put_over", ["ca", "pva"])
def test_double_alarm_limits_seen_over_ca_and_pva(_network, _ioc, put_over):
    name = _ioc.pv("DOUBLE")
    ca_mon = eh.ca_monitor(name)
    try:
        for value, severity, status in ALARM_STEPS:
            if put_over == "ca":
                eh.ca_put(name, value)
            else:
                eh.pva_put(_network, name, value)
            ca = eh.ca_get(name)
            assert (ca.value, ca.severity, ca.status) == (value, severity, CA_STATUS[status])
            pva = eh.pva_get(_network, name)
            message = "" if status == "NO_ALARM" else status
            assert (pva.value, pva.severity, pva.message) == (value, severity, message)
            wait_until(
                latest_is(ca_mon, value),
                timeout=TIMEOUT,
                what=f"CA monitor update {name}={value}",
                seen=ca_mon.values,
            )
            assert ca_mon.updates[-1].severity == severity
    finally:
        ca_mon.close()
        restore(_network, _ioc, BY_SUFFIX["DOUBLE"])


def test_emptied_array_gives_empty_updates_on_ca_and_pva(_network, _ioc):
    pv = BY_SUFFIX["EMPTY_ARRAY"]
    name = _ioc.pv(pv.suffix)
    ca_mon, pva_mon = eh.ca_monitor(name), eh.pva_monitor(_network, name)
    try:
        for mon in (ca_mon, pva_mon):
            wait_until(
                latest_is(mon, pv.initial),
                timeout=TIMEOUT,
                what=f"first update of {name}",
                seen=mon.values,
            )
        eh.pva_put(_network, name, np.array([], dtype=np.float64))
        for mon in (ca_mon, pva_mon):
            wait_until(
                latest_is(mon, []),
                timeout=TIMEOUT,
                what=f"empty update of {name} on {type(mon).__name__}",
                seen=mon.values,
            )
        assert np.size(eh.ca_get(name).value) == 0
        assert np.size(eh.pva_get(_network, name).value) == 0
    finally:
        ca_mon.close()
        pva_mon.close()
        restore(_network, _ioc, pv)


# -- tables -----------------------------------------------------------------------------------


def test_table_server_serves_sample_table_and_empty_table(_network, _tables):
    table = eh.pva_get(_network, _tables.pv(TABLE))
    assert table.type_id.startswith("epics:nt/NTTable:")
    assert list(table.raw["labels"]) == ["value", "timestamp"]
    values, stamps = table.raw["value.value"], table.raw["value.timestamp"]
    assert values.dtype == np.float64 and stamps.dtype == np.uint64
    assert list(values) == TABLE_INITIAL_VALUES
    assert abs(int(stamps[0]) / 1e9 - time.time()) < 3600
    empty = eh.pva_get(_network, _tables.pv(EMPTY_TABLE))
    assert len(empty.raw["value.value"]) == 0 and len(empty.raw["value.timestamp"]) == 0


def test_table_put_is_posted_to_monitors(_network, _tables):
    name = _tables.pv(TABLE)
    monitor = eh.pva_monitor(_network, name)

    def rows():
        return [list(u.raw["value.value"]) for u in monitor.updates]

    try:
        wait_until(lambda: monitor.updates, timeout=TIMEOUT, what=f"first update of {name}")
        now_ns = time.time_ns()
        new = {"value": {"value": [7.0, 8.0], "timestamp": [now_ns, now_ns + 1000]}}
        eh.pva_put(_network, name, new)
        wait_until(
            lambda: rows() and rows()[-1] == [7.0, 8.0],
            timeout=TIMEOUT,
            what=f"{name} update with the put rows",
            seen=rows,
        )
        got = eh.pva_get(_network, name).raw
        assert list(got["value.timestamp"]) == [now_ns, now_ns + 1000]
        eh.pva_put(_network, name, {"value": {"value": [], "timestamp": []}})
        wait_until(
            lambda: rows() and rows()[-1] == [], timeout=TIMEOUT, what=f"{name} emptied", seen=rows
        )
    finally:
        monitor.close()
        eh.pva_put(
            _network, name, {"value": {"value": TABLE_INITIAL_VALUES, "timestamp": [1, 2, 3]}}
        )


# -- several rigs, restarts, clean exit -------------------------------------------------------


def test_two_iocs_with_same_prefix_on_different_networks_do_not_collide(rig, _network, _ioc):
    other_network = allocate_epics_network()
    other = rig.ioc(PREFIX, other_network)
    other.start()  # CA readiness is checked from a fresh process on the other network
    name = _ioc.pv("DOUBLE")
    try:
        eh.ca_put(name, 3.25)
        eh.pva_put(other_network, name, -4.5)
        assert eh.pva_get(_network, name).value == 3.25
        assert eh.pva_get(other_network, name).value == -4.5
        assert eh.ca_get(name).value == 3.25
        # libca reads its env once per process: reach the other network from a fresh one.
        assert float(eh.caget_in_subprocess(other_network, name)) == -4.5
    finally:
        other.stop()
        restore(_network, _ioc, BY_SUFFIX["DOUBLE"])
    assert not other.is_running() and other.returncode == 0


def test_second_ioc_on_the_same_network_is_refused(rig, _network, _ioc):
    second = rig.ioc(PREFIX.replace("RIG", "SECOND"), _network)
    with pytest.raises(RuntimeError, match="only one IOC per network"):
        second.start()
    assert not second.is_running()
    assert eh.ca_get(_ioc.pv("LONG")).value == BY_SUFFIX["LONG"].initial


def test_ioc_restart_is_a_disconnect_then_reconnect_on_ca_and_pva(_network, _ioc):
    name = _ioc.pv("DOUBLE")
    ca_mon, pva_mon = eh.ca_monitor(name), eh.pva_monitor(_network, name)
    try:
        eh.ca_put(name, 3.25)  # the restarted IOC comes back with 1.5: a visible change
        for mon in (ca_mon, pva_mon):
            wait_until(
                latest_is(mon, 3.25),
                timeout=TIMEOUT,
                what=f"{name}=3.25 on {type(mon).__name__}",
                seen=mon.values,
            )
        ca_before, pva_before = len(ca_mon.connections), len(pva_mon.events)
        _ioc.restart()

        def ca_reconnected():
            after = ca_mon.connections[ca_before:]
            return False in after and True in after[after.index(False) :]

        wait_until(
            ca_reconnected,
            timeout=RECONNECT_TIMEOUT,
            what="CA disconnect then reconnect",
            seen=lambda: ca_mon.connections,
        )

        def pva_reconnected():
            after = pva_mon.events[pva_before:]
            return "disconnected" in after and "value" in after[after.index("disconnected") :]

        wait_until(
            pva_reconnected,
            timeout=RECONNECT_TIMEOUT,
            what="PVA disconnect then value",
            seen=lambda: pva_mon.events,
        )
        for mon in (ca_mon, pva_mon):
            wait_until(
                latest_is(mon, 1.5),
                timeout=RECONNECT_TIMEOUT,
                what=f"restarted IOC's {name}=1.5 on {type(mon).__name__}",
                seen=mon.values,
            )
    finally:
        ca_mon.close()
        pva_mon.close()


SERVERS = {"ioc": lambda rig, network: rig.ioc(PREFIX, network),
           "table_server": lambda rig, network: rig.table_server(PREFIX, network)}


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_stopped_server_exits_0_and_leaves_no_process(rig, _network, _ioc, kind):
    server = SERVERS[kind](rig, allocate_epics_network())
    server.start()
    pid = server.pid
    server.stop()
    assert server.returncode == 0, server.log_tail()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_ca_client_env_cannot_be_switched_after_libca_started(_network, _ioc):
    eh.ca_get(_ioc.pv("DOUBLE"))
    with pytest.raises(eh.EpicsClientError, match="already running"):
        eh.configure_client_env(allocate_epics_network())
    eh.configure_client_env(_network)  # the same settings again are fine


def test_no_carepeater_process_is_left(_network, _ioc):
    """libca has run in this process by now; no caRepeater process may exist for us."""
    eh.ca_get(_ioc.pv("DOUBLE"))
    assert eh.carepeater_pids(_network) == []
