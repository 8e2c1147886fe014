"""A p4p server posting counters at a set rate: PVA load above the IOC's 10 Hz scan period.

    python -m bench.pva_load --prefix BENCH:P: --count 100 --rate 200

serves ``{prefix}C0..C{count-1}`` (NTScalar double) and posts every PV ``rate`` times a
second, each value one more than the last, stamped with the posting time. Ticks are paced
by deadline; a tick that runs late is not skipped, so an overloaded server shows up as a
lower delivered rate in the generator check (never as a gap). ``PvaLoadServer`` runs it as
a rig process that is ready once the first PV answers.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from helpers.rig.api import EpicsNetwork
from helpers.rig.local.epics_servers import EpicsServerProcess
from helpers.rig.paths import REPO_ROOT
from helpers.rig.readiness import wait_pva_answers


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}C{i}" for i in range(count)]


class PvaLoadServer(EpicsServerProcess):
    """``python -m bench.pva_load`` as a rig process (same life cycle as the table server)."""

    kind = "pva-load"

    def __init__(self, prefix: str, network: EpicsNetwork, *, count: int, rate: float):
        argv = [sys.executable, "-m", "bench.pva_load", "--prefix", prefix,
                "--count", str(count), "--rate", str(rate)]
        super().__init__(prefix, network, argv)
        self._process.env["PYTHONPATH"] = str(REPO_ROOT)
        self.count = count
        self.rate = rate

    def _wait_ready(self, timeout: float) -> None:
        probe = names(self.prefix, self.count)[-1]
        wait_pva_answers(self.network, probe, timeout=timeout, check_alive=self._alive_or_raise)


def serve(prefix: str, count: int, rate: float) -> None:
    from p4p.nt import NTScalar
    from p4p.server import Server
    from p4p.server.thread import SharedPV

    pvs = [SharedPV(nt=NTScalar("d"), initial=0.0) for _ in range(count)]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Server(providers=[dict(zip(names(prefix, count), pvs, strict=True))]):
        print(f"pva_load ready: {count} PVs at {rate} Hz", flush=True)
        period = 1.0 / rate
        value = 0.0
        next_tick = time.monotonic()
        while not stop.is_set():
            value += 1
            now = time.time()
            for pv in pvs:
                pv.post(value, timestamp=now)
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                stop.wait(delay)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="posts per PV per second")
    args = parser.parse_args()
    serve(args.prefix, args.count, args.rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
