"""Read every load counter straight from its server (CA or PVA) at one instant.

Two readings, at a window's start and end, say what the generator really made in the
window (the offered rate is measured, not assumed) and which values a forwarder should have
delivered (``bench.delivery``). Reads run in the orchestrator's process: the EPICS network
is the same for the whole run, and one bulk read of a few thousand PVs costs little.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from helpers.rig.api import EpicsNetwork

CONNECT_TIMEOUT_S = 30.0
GET_TIMEOUT_S = 10.0


def _use_network(network: EpicsNetwork) -> None:
    """libca and pvxs read the network from the environment when first used."""
    os.environ.update(network.client_env())


def _scalar(value) -> float:
    """The counter in a value: itself, or an array's largest element (its newest sample)."""
    return float(np.max(value)) if np.ndim(value) else float(value)


@dataclass
class Snapshot:
    """Counter value and server timestamp per PV, and when the read began and ended."""

    values: dict[str, float] = field(default_factory=dict)
    stamps: dict[str, float] = field(default_factory=dict)
    began: float = 0.0
    ended: float = 0.0


def offered_rate(start: Snapshot, end: Snapshot) -> float | None:
    """Updates per second the generator made between two readings: each PV's counter steps
    over its own timestamp span (wall time of the reads if the server sent none)."""
    total = 0.0
    seen = False
    for name, v0 in start.values.items():
        v1 = end.values.get(name)
        if v1 is None:
            continue
        t0, t1 = start.stamps.get(name), end.stamps.get(name)
        span = (t1 - t0) if t0 and t1 and t1 > t0 else (end.began + end.ended - start.began
                                                         - start.ended) / 2
        if span > 0:
            total += (v1 - v0) / span
            seen = True
    return total if seen else None


class CaCounters:
    """Channels to every counter, opened once; ``read()`` fetches all of them at once."""

    def __init__(self, network: EpicsNetwork, names: Sequence[str]):
        _use_network(network)
        from epics import ca

        self._ca = ca
        self.names = list(names)
        self._chids = [ca.create_channel(n, connect=False, auto_cb=False) for n in self.names]
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        for chid in self._chids:
            ca.connect_channel(chid, timeout=max(deadline - time.monotonic(), 0.1))
        self._types = {}
        for name, chid in zip(self.names, self._chids, strict=True):
            if ca.isConnected(chid):
                self._types[name] = ca.promote_type(chid, use_time=True)

    def read(self) -> Snapshot:
        ca = self._ca
        snap = Snapshot(began=time.time())
        pending = [(n, c) for n, c in zip(self.names, self._chids, strict=True)
                   if n in self._types]
        for name, chid in pending:
            ca.get_with_metadata(chid, ftype=self._types[name], wait=False)
        ca.poll()
        for name, chid in pending:
            got = ca.get_complete_with_metadata(chid, ftype=self._types[name],
                                                timeout=GET_TIMEOUT_S)
            if got is None or got.get("value") is None:
                continue
            snap.values[name] = _scalar(got["value"])
            if got.get("timestamp"):
                snap.stamps[name] = float(got["timestamp"])
        snap.ended = time.time()
        return snap

    def close(self) -> None:
        for chid in self._chids:
            self._ca.clear_channel(chid)
        self._chids = []


class PvaCounters:
    """The same over PVA (the IOC's QSRV or the p4p load server)."""

    def __init__(self, network: EpicsNetwork, names: Sequence[str]):
        _use_network(network)
        from p4p.client.thread import Context

        self.names = list(names)
        self._ctx = Context("pva")

    def read(self) -> Snapshot:
        snap = Snapshot(began=time.time())
        got = self._ctx.get(self.names, timeout=GET_TIMEOUT_S, throw=False)
        for name, value in zip(self.names, got, strict=True):
            if isinstance(value, Exception):
                continue
            snap.values[name] = _scalar(value)
            stamp = getattr(value, "timestamp", None)
            if stamp:
                snap.stamps[name] = float(stamp)
        snap.ended = time.time()
        return snap

    def close(self) -> None:
        self._ctx.close()


def open_counters(network: EpicsNetwork, names: Sequence[str], protocol: str):
    """A reader for ``protocol`` ("CA" or "PVA"); None for sources with no counter (FAKE)."""
    kinds = {"CA": CaCounters, "PVA": PvaCounters}
    kind = kinds.get(protocol.upper())
    return None if kind is None else kind(network, names)
