"""Why pyepics (libca) and not caproto's threading client: a short, time-boxed measurement.

Runs the source tests' IOC (tests/sources/run_test_ioc.py) on isolated ports and, one
client at a time in its own subprocess, subscribes to a fast counter with DBR_TIME:

* throughput: monitor callbacks per second on FAST (a counter in a delayed-output loop,
  a few thousand updates per second), counter values missed (gaps), and client CPU seconds;
* IOC restart: with the IOC stopped and started again, the time from the restart to the
  client's reconnect and to its first value after it.

Usage (dev venv for the orchestration; the client python needs pyepics and caproto):
    /work/devvenv/bin/python bench/ca_client_choice.py --client-python /tmp/caproto-venv/bin/python
This is a benchmark, not a test: it uses fixed durations on purpose.

Seen on 2026-11-24 (2 shared cores, load 5-12; pyepics 3.5.10 vs caproto 1.3.0):
* ~3.8 kHz counter, 6 s: both received every value (~3.8k callbacks/s, 0 missed);
  client CPU 0.9 s (pyepics) vs 1.5 s (caproto).
* saturated counter (ODLY 0, IOC ~0.4-0.8M updates/s, 4 s): pyepics ~42-55k callbacks/s
  for the whole run (libca drops intermediate values, as CA does); caproto delivered ~3.2k
  callbacks in well under a second, then none for the rest of the run without losing the
  connection (twice).
* IOC stopped for 3 s and restarted: both saw the disconnect in 0.13 s; pyepics reconnected
  with the current value 2.8-3.8 s after the restart, caproto 4.7 s.
* caproto holds callbacks by weak reference (a lambda gets no calls at all).
Hence pyepics (libca).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIENT_CODE = r"""
import json, os, sys, threading, time
impl, pv_name, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])
lock = threading.Lock()
values, conns = [], []

def on_value(value, t):
    with lock:
        values.append((t, int(value)))

def on_conn(up):
    with lock:
        conns.append((time.time(), bool(up)))
        print(json.dumps({"conn": up, "t": time.time()}), flush=True)

if impl == "pyepics":
    from epics import ca, dbr
    ca.initialize_libca()
    keep = []
    def conn_cb(pvname=None, chid=None, conn=False, **kw):
        on_conn(conn)
        if conn and not keep:
            keep.append(ca.create_subscription(chid, ftype=ca.field_type(chid) + 14,
                count=0, callback=lambda value=None, **kw: on_value(value, time.time())))
    chid = ca.create_channel(pv_name, connect=False, callback=conn_cb)
else:
    from caproto.threading.client import Context
    ctx = Context()
    # caproto holds callbacks by weak reference: keep them as named module-level functions.
    def state_cb(pv, state):
        on_conn(state == "connected")
    def value_cb(sub, response):
        on_value(response.data[0], time.time())
    (pv,) = ctx.get_pvs(pv_name, connection_state_callback=state_cb)
    sub = pv.subscribe(data_type="time")
    sub.add_callback(value_cb)
start = time.time()
time.sleep(duration)
with lock:
    vs = list(values)
cpu = os.times()
gaps = sum(max(0, b[1] - a[1] - 1) for a, b in zip(vs, vs[1:]) if b[1] > a[1])
print(json.dumps({"result": {
    "callbacks": len(vs), "start": start, "end": time.time(), "missed": gaps,
    "cpu_s": cpu.user + cpu.system, "values": vs[:1] + vs[-1:],
    "times": [t for t, _ in vs], "conns": conns}}), flush=True)
if impl == "pyepics":
    ca.finalize_libca()
else:
    ctx.disconnect()
"""


def run_client(python, impl, pv, duration, env, during=None):
    """Runs one client; ``during(events)`` may act (stop/start the IOC) while it runs."""
    proc = subprocess.Popen(
        [python, "-c", CLIENT_CODE, impl, pv, str(duration)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    events = []
    if during is not None:
        during(proc, events)
    result = None
    for line in proc.stdout:
        msg = json.loads(line)
        events.append(msg)
        result = msg.get("result", result)
    proc.wait(timeout=30)
    return result, events


def main() -> None:
    from helpers.rig.ports import allocate_epics_network
    from helpers.rig.processes import ManagedProcess

    parser = argparse.ArgumentParser()
    parser.add_argument("--client-python", default="/tmp/caproto-venv/bin/python")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--odly", default="0.0002", help="output delay of the fast loop, s")
    parser.add_argument("--skip-restart", action="store_true")
    args = parser.parse_args()

    env = {**os.environ, **allocate_epics_network().server_env()}
    prefix = f"BENCH{uuid.uuid4().hex[:6]}:"
    run_ioc = str(ROOT / "tests/sources/run_test_ioc.py")

    def ioc(macros):
        return ManagedProcess("ca-bench-ioc", [sys.executable, run_ioc, prefix, macros], env=env)

    fast = ioc(f"FAST_ODLY={args.odly}").start()
    try:
        time.sleep(2)  # let the IOC come up
        kick = "from epics import caput; import sys; caput(sys.argv[1], 1, wait=True, timeout=10)"
        subprocess.run([args.client_python, "-c", kick, prefix + "FAST_KICK.PROC"], env=env)
        for impl in ("pyepics", "caproto"):
            r, _ = run_client(args.client_python, impl, prefix + "FAST", args.seconds, env)
            span = r["times"][-1] - r["times"][0] if len(r["times"]) > 1 else float("nan")
            produced = r["values"][-1][1] - r["values"][0][1] + 1 if r["values"] else 0
            print(
                f"{impl:8s} throughput: {r['callbacks'] / span:8.0f} callbacks/s, "
                f"{r['callbacks']} received of {produced} produced "
                f"(missed {r['missed']}), client CPU {r['cpu_s']:.1f}s in {args.seconds:.0f}s, "
                f"connection events {[up for _, up in r['conns']]}, "
                f"last callback {r['times'][-1] - r['start']:.1f}s after client start"
            )
    finally:
        fast.stop()

    for impl in () if args.skip_restart else ("pyepics", "caproto"):
        slow = ioc("COUNTER_SCAN=.1 second").start()
        marks = {}

        def restart(proc, events, slow=slow, marks=marks):
            line = proc.stdout.readline()  # the first connection event
            events.append(json.loads(line))
            time.sleep(2)
            marks["stopped"] = time.time()
            slow.stop()
            time.sleep(3)
            marks["restarted"] = time.time()
            slow.start()

        try:
            r, events = run_client(
                args.client_python, impl, prefix + "COUNTER", 30, env, during=restart
            )
        finally:
            slow.stop()
        downs = [t for t, up in r["conns"] if not up and t > marks["stopped"]]
        ups = [t for t, up in r["conns"] if up and t > marks["restarted"]]
        first_value = [t for t in r["times"] if t > marks["restarted"]]

        def rel(ts, ref):
            return f"{ts[0] - ref:5.2f}s" if ts else "never"

        print(
            f"{impl:8s} IOC restart: disconnect seen {rel(downs, marks['stopped'])} after stop; "
            f"reconnected {rel(ups, marks['restarted'])} and first value "
            f"{rel(first_value, marks['restarted'])} after restart"
        )


if __name__ == "__main__":
    main()
