"""CA and PVA client helpers for tests, talking to a rig's IOC on the rig's own ports.

libca (pyepics) reads the EPICS environment once, when it starts, so the test process must
call ``configure_client_env(network)`` before its first CA use, and can then talk CA to one
network only. p4p contexts get the network's settings explicitly, so PVA works for any
number of networks side by side.

caRepeater: on its first search libca forks to exec a ``caRepeater`` executable (on
EPICS_CA_REPEATER_PORT). None is installed here (pyepics ships one for Windows only,
epicscorelibs none on PATH), so the exec fails, libca prints 'Unable to start "CA Repeater"
process' and runs without a repeater: nothing is left behind, and clients miss server
beacons, so a CA reconnect after an IOC restart relies on libca's search retries (about
5 s here). ``carepeater_pids(network)`` lets tests check that no repeater process exists.

Run as ``python -m helpers.epics_helpers caget PV TIMEOUT`` (cwd = repo root, env = a
network's client env) to read a PV over CA from a fresh process: used to reach a second
network, and by LocalIoc to see that CA answers when the test process's libca cannot.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers.rig.api import EpicsNetwork

_ca_env: dict[str, str] | None = None  # the environment libca was (or will be) started with
_pva_contexts: dict[EpicsNetwork, object] = {}
_pva_lock = threading.Lock()


class EpicsClientError(RuntimeError):
    """A get, put or connection failed; the message says which PV and what happened."""


# -- environment -----------------------------------------------------------------------------


def _libca_started() -> bool:
    ca = sys.modules.get("epics.ca")
    return ca is not None and ca.libca is not None


def configure_client_env(network: EpicsNetwork) -> None:
    """Point this process's CA (and env-reading PVA) clients at ``network``.

    Must run before the first pyepics use: libca reads the environment only once.
    """
    global _ca_env
    env = network.client_env()
    if _libca_started():
        started_with = _ca_env or {k: os.environ.get(k, "") for k in env}
        if started_with != env:
            raise EpicsClientError(
                "libca is already running with other EPICS settings "
                f"({started_with}); configure_client_env({network}) must be called before "
                "the first pyepics use in this process"
            )
    os.environ.update(env)
    _ca_env = env


def ca_talks_to(network: EpicsNetwork) -> bool:
    """Whether in-process CA reaches ``network`` (configure_client_env was called for it)."""
    return _ca_env == network.client_env()


def carepeater_pids(network: EpicsNetwork | None = None) -> list[int]:
    """Pids of caRepeater processes (of ``network``'s repeater port if given)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "caRepeater":
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        port = f"EPICS_CA_REPEATER_PORT={network.ca_repeater_port}".encode() if network else None
        if port is None or port in environ:
            pids.append(int(proc.name))
    return pids


# -- CA (pyepics) ----------------------------------------------------------------------------


@dataclass
class CaReading:
    """One CA value with the time metadata (DBR_TIME_*) the forwarder sees."""

    value: object
    timestamp: float  # seconds since the Unix epoch
    severity: int
    status: int
    ftype: str  # pyepics type name, e.g. "time_double"


def _require_ca():
    if _ca_env is None:
        raise EpicsClientError("call configure_client_env(network) before using CA helpers")
    import epics

    return epics


def _ca_pv(name: str, timeout: float):
    epics = _require_ca()
    pv = epics.get_pv(name, form="time", connect=True, timeout=timeout)
    if not pv.connected:
        raise EpicsClientError(f"CA: {name} did not connect within {timeout}s")
    return pv


def ca_get(name: str, timeout: float = 5.0, as_string: bool = False) -> CaReading:
    """Read ``name`` over CA with its timestamp, severity and status."""
    pv = _ca_pv(name, timeout)
    data = pv.get_with_metadata(
        timeout=timeout, form="time", as_numpy=True, as_string=as_string, use_monitor=False
    )
    if data is None:
        raise EpicsClientError(f"CA: get of {name} timed out after {timeout}s")
    return CaReading(data["value"], data["timestamp"], data["severity"], data["status"], pv.type)


def ca_put(name: str, value, timeout: float = 5.0) -> None:
    """Write ``value`` to ``name`` over CA and wait until the record has processed it."""
    pv = _ca_pv(name, timeout)
    if pv.put(value, wait=True, timeout=timeout) != 1:
        raise EpicsClientError(f"CA: put of {value!r} to {name} did not complete in {timeout}s")


@dataclass
class CaMonitor:
    """A CA subscription collecting every update and connection change into lists."""

    name: str
    updates: list[CaReading] = field(default_factory=list)
    connections: list[bool] = field(default_factory=list)  # True = connected
    _pv: object = None

    def close(self) -> None:
        if self._pv is not None:
            self._pv.clear_callbacks()
            self._pv.disconnect()
            self._pv = None

    def values(self) -> list:
        return [u.value for u in self.updates]


def ca_monitor(name: str) -> CaMonitor:
    """Subscribe to ``name`` over CA; updates arrive in the returned monitor's lists."""
    epics = _require_ca()
    monitor = CaMonitor(name)

    def on_update(value=None, timestamp=None, severity=None, status=None, type=None, **_):
        monitor.updates.append(CaReading(value, timestamp, severity, status, type))

    def on_connection(conn=None, **_):
        monitor.connections.append(bool(conn))

    monitor._pv = epics.PV(
        name,
        form="time",
        auto_monitor=True,
        callback=on_update,
        connection_callback=on_connection,
    )
    return monitor


# -- PVA (p4p) -------------------------------------------------------------------------------


def pva_context(network: EpicsNetwork):
    """The p4p client context of ``network`` (one per network, raw Values, no env reads)."""
    from p4p.client.thread import Context

    with _pva_lock:
        ctx = _pva_contexts.get(network)
        if ctx is None:
            ctx = Context("pva", conf=network.client_env(), useenv=False, nt=False)
            _pva_contexts[network] = ctx
        return ctx


def close_pva_contexts() -> None:
    """Close every p4p context these helpers opened."""
    with _pva_lock:
        for ctx in _pva_contexts.values():
            ctx.close()
        _pva_contexts.clear()


@dataclass
class PvaReading:
    """One PVA value with the NT alarm and timeStamp the forwarder sees."""

    value: object  # numpy scalar/array, str, list of str, enum index, or the table struct
    timestamp: float
    severity: int
    status: int
    message: str
    type_id: str  # e.g. "epics:nt/NTScalar:1.0"
    raw: object  # the p4p Value

    @classmethod
    def from_value(cls, raw) -> PvaReading:
        value = raw["value"]
        type_id = raw.getID()
        if type_id.startswith("epics:nt/NTEnum"):
            value = raw["value.index"]
        ts = raw["timeStamp.secondsPastEpoch"] + raw["timeStamp.nanoseconds"] * 1e-9
        return cls(
            value=value,
            timestamp=ts,
            severity=raw["alarm.severity"],
            status=raw["alarm.status"],
            message=raw["alarm.message"],
            type_id=type_id,
            raw=raw,
        )


def pva_get(network: EpicsNetwork, name: str, timeout: float = 5.0) -> PvaReading:
    """Read ``name`` over PVA with its alarm and timestamp."""
    try:
        raw = pva_context(network).get(name, timeout=timeout)
    except Exception as err:  # p4p raises TimeoutError or RemoteError
        raise EpicsClientError(f"PVA: get of {name} failed: {err!r}") from err
    return PvaReading.from_value(raw)


def pva_probe(network: EpicsNetwork, name: str, timeout: float = 0.5) -> bool:
    """Whether ``name`` answers a PVA get right now, asked from a throw-away context.

    The shared context keeps a channel that found no server and searches for it again only
    after a growing backoff, so polling a server that is still starting through it could
    wait many seconds after the server is up (IOC starts took up to 18 s)."""
    from p4p.client.thread import Context

    ctx = Context("pva", conf=network.client_env(), useenv=False, nt=False)
    try:
        ctx.get(name, timeout=timeout)
    except Exception:  # noqa: BLE001 - p4p raises TimeoutError or RemoteError: not yet
        return False
    finally:
        ctx.close()
    return True


def pva_put(network: EpicsNetwork, name: str, value, timeout: float = 5.0) -> None:
    """Write ``value`` (a plain value, or a dict of fields) to ``name`` over PVA, waiting."""
    try:
        pva_context(network).put(name, value, timeout=timeout, wait=True)
    except Exception as err:
        raise EpicsClientError(f"PVA: put of {value!r} to {name} failed: {err!r}") from err


@dataclass
class PvaMonitor:
    """A PVA subscription collecting updates; a disconnect is recorded as an event too."""

    name: str
    updates: list[PvaReading] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # "value", "disconnected", "error: ..."
    _sub: object = None

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def values(self) -> list:
        return [u.value for u in self.updates]


def pva_monitor(network: EpicsNetwork, name: str) -> PvaMonitor:
    """Subscribe to ``name`` over PVA; updates and disconnects arrive in the monitor's lists."""
    from p4p.client.thread import Disconnected

    monitor = PvaMonitor(name)

    def on_event(item) -> None:
        if isinstance(item, Disconnected):
            monitor.events.append("disconnected")
        elif isinstance(item, Exception):
            monitor.events.append(f"error: {item!r}")
        else:
            monitor.updates.append(PvaReading.from_value(item))
            monitor.events.append("value")

    monitor._sub = pva_context(network).monitor(name, on_event, notify_disconnect=True)
    _recover_a_lost_first_wakeup(monitor._sub)
    return monitor


def _recover_a_lost_first_wakeup(subscription) -> None:
    """p4p 4.3 sets a Subscription's handle only after ``monitor()`` returns, so a first event
    that comes sooner is dropped ("Lost Subscription update") and the monitor stays silent
    for good (seen in the rig's contract tests). One extra drain of its queue, now that the
    handle is set, delivers what was lost; with nothing lost it is a no-op."""
    try:
        subscription._Q.push(subscription._handle)
    except AttributeError:  # another p4p version
        pass


# -- CA from a fresh process -----------------------------------------------------------------


def _caget_main(name: str, timeout: float) -> int:
    """Poll ``name`` over CA until it answers or ``timeout`` passes; print it as JSON."""
    import epics

    deadline = time.monotonic() + timeout
    while True:
        value = epics.caget(name, timeout=1.0, connection_timeout=1.0, as_string=True)
        if value is not None:
            print(json.dumps({"pv": name, "value": value}), flush=True)
            return 0
        if time.monotonic() >= deadline:
            print(json.dumps({"pv": name, "error": f"no answer in {timeout}s"}), flush=True)
            return 1


def caget_in_subprocess(network: EpicsNetwork, name: str, timeout: float = 10.0) -> str:
    """Read ``name`` over CA (as a string) from a fresh process using ``network``'s ports."""
    import subprocess

    from helpers.rig.paths import REPO_ROOT

    env = {**os.environ, **network.client_env()}
    argv = [sys.executable, "-m", "helpers.epics_helpers", "caget", name, str(timeout)]
    done = subprocess.run(
        argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout + 15
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"error": done.stderr[-2000:]}
    if done.returncode != 0 or "value" not in result:
        raise EpicsClientError(f"CA (subprocess): get of {name} failed: {result.get('error')}")
    return result["value"]


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "caget":
        print("usage: python -m helpers.epics_helpers caget PV TIMEOUT", file=sys.stderr)
        sys.exit(2)
    sys.exit(_caget_main(sys.argv[2], float(sys.argv[3])))
