"""Can the load generator sustain its offered rate on its own? Monitor it without a forwarder.

Run in its own process (libca reads the EPICS network from the environment at start):
    python -m bench.gen_check --protocol ca --seconds 5 --out result.json NAME...
It subscribes to every PV, waits (with a deadline) until each has sent a value, then counts
updates, counter gaps and latency (receive time minus EPICS timestamp) for ``--seconds``,
and writes them with its own CPU time.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np


class Counter:
    """Counts updates per PV and gaps in each PV's counter (thread-safe)."""

    def __init__(self, names: list[str]):
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self.counting = False
        self.updates = 0
        self.gaps = 0
        self.latencies: list[float] = []
        self.names = names

    def on_value(self, name: str, value, timestamp: float | None) -> None:
        now = time.time()
        v = float(np.max(value)) if np.ndim(value) else float(value)
        with self._lock:
            last = self._last.get(name)
            self._last[name] = v
            if self.counting:
                self.updates += 1
                if timestamp:
                    self.latencies.append(now - timestamp)
                if last is not None and v != last + 1:
                    self.gaps += int(max(v - last - 1, 1))

    def seen(self) -> int:
        with self._lock:
            return len(self._last)


def subscribe_ca(names: list[str], counter: Counter) -> list:
    import epics

    def callback(pvname=None, value=None, timestamp=None, **_):
        counter.on_value(pvname, value, timestamp)

    return [epics.PV(n, callback=callback, form="time", auto_monitor=True) for n in names]


def subscribe_pva(names: list[str], counter: Counter) -> list:
    from p4p.client.thread import Context

    ctx = Context("pva")

    def make_cb(name):
        def callback(value):
            if isinstance(value, Exception):
                return
            counter.on_value(name, np.asarray(value), getattr(value, "timestamp", None))

        return callback

    subscriptions = [ctx.monitor(n, make_cb(n)) for n in names]
    for subscription in subscriptions:
        # p4p 4.3 can lose a new subscription's first wakeup (see forwarder/sources/pva.py);
        # one extra drain of its queue recovers it, so the generator is not blamed for it.
        try:
            subscription._Q.push(subscription._handle)
        except AttributeError:
            pass
    return [ctx, *subscriptions]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", choices=("ca", "pva"), required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    counter = Counter(args.names)
    keep = (subscribe_ca if args.protocol == "ca" else subscribe_pva)(args.names, counter)
    deadline = time.monotonic() + args.connect_timeout
    while counter.seen() < len(args.names) and time.monotonic() < deadline:
        time.sleep(0.1)
    connected = counter.seen()
    cpu0 = time.process_time()
    start = time.monotonic()
    counter.counting = True
    time.sleep(args.seconds)  # the measurement window itself, not a synchronisation
    counter.counting = False
    elapsed = time.monotonic() - start
    cpu = time.process_time() - cpu0
    lat_ms = np.array(counter.latencies or [0.0]) * 1000
    result = {
        "lat_p50_ms": float(np.percentile(lat_ms, 50)),
        "lat_p99_ms": float(np.percentile(lat_ms, 99)),
        "lat_max_ms": float(lat_ms.max()),
        "protocol": args.protocol,
        "pvs": len(args.names),
        "connected": connected,
        "seconds": elapsed,
        "updates": counter.updates,
        "rate": counter.updates / elapsed,
        "gaps": counter.gaps,
        "cpu_s": cpu,
    }
    args.out.write_text(json.dumps(result))
    del keep
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
