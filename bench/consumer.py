"""The benchmark's consumer: reads a data topic and checks every forwarded value.

Run in its own process, so its CPU is neither the forwarder's nor the orchestrator's:
    python -m bench.consumer --bootstrap H:P --topic T --mode counter --expect N \
        --control C.json --progress P.json --out R.json --received V.json
It reads the topic from its beginning. ``counter`` mode decodes every message and checks
that each PV's counter goes up by exactly one (gaps = lost values, repeats = duplicates);
``count`` mode (FAKE PVs, whose values are random) counts messages and decodes a random
1 in ``--sample`` for latency. The orchestrator writes the window {t0, t1, drain, caught_up}
(epoch seconds; t1 null while the window is open) to the control file once data flows, and
may rewrite it (it is re-read when it changes); updates received in [t0, t1) give the
throughput and latency (receive time minus the EPICS timestamp in the payload). After t1
it keeps reading (at most ``drain`` s) until every PV has shown a value stamped after
``caught_up`` (the end of the orchestrator's last reading of the generator; null: wait for
it), so late values still count as delivered, then writes the result file and, in counter
mode, every PV's received values as runs (for ``bench.delivery``). With ``--steps`` (counter
mode) it also times each value by its broker append time and writes, per PV, the steps from
t0 on that are not a plain +1 soon after the last (``Steps``; the failover's handovers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import uuid
from array import array
from pathlib import Path

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_LOG_APPEND_TIME, Consumer, TopicPartition

from bench.delivery import ReceivedValues
from bench.f144_reader import read_counter, read_name_and_time

BATCH = 10_000
PROGRESS_EVERY_S = 0.25
SILENCE_S = 0.5  # five scans of a 10 Hz counter: a longer wait for the next value is a step
STEPS_KEPT = 100  # per PV: a build losing every other value must not fill memory and file


class PvTrack:
    """Per-PV counter check."""

    __slots__ = ("last", "count", "gaps", "repeats", "last_ts", "received")

    def __init__(self, value: float, ts: int):
        self.last = value
        self.count = 1
        self.gaps = 0
        self.repeats = 0
        self.last_ts = ts
        self.received = ReceivedValues()
        self.received.add(int(round(value)))

    def add(self, value: float, ts: int) -> None:
        step = value - self.last
        if step == 1:
            pass
        elif step > 1:
            self.gaps += int(step - 1)
        else:
            self.repeats += 1
        self.last = max(self.last, value)
        self.count += 1
        self.last_ts = ts
        self.received.add(int(round(value)))


class Steps:
    """Per PV, its newest value and append time, and the steps [t_before, t_after, before,
    after] with t_after >= ``since`` that are not +1 within SILENCE_S: a silence, a loss
    (after > before + 1) or a repeat (after <= before)."""

    def __init__(self):
        self.since = float("inf")
        self.pvs: dict[bytes, list] = {}  # name -> [highest value, its append time, steps]

    def add(self, name: bytes, value: float, at: float) -> None:
        pv = self.pvs.get(name)
        if pv is None:
            self.pvs[name] = [value, at, []]
            return
        last, last_at, steps = pv
        if at >= self.since and (value != last + 1 or at - last_at >= SILENCE_S) \
                and len(steps) < STEPS_KEPT:
            steps.append([last_at, at, last, value])
        pv[0] = max(last, value)
        pv[1] = at

    def oldest(self) -> float | None:
        """The append time of the PV that has gone longest without a value."""
        return min((pv[1] for pv in self.pvs.values()), default=None)

    def dump(self) -> dict:
        return {n.decode(errors="replace"): {"last": pv[1], "steps": pv[2]}
                for n, pv in self.pvs.items()}


def make_consumer(bootstrap: str, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            "fetch.min.bytes": 1,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    return consumer


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def run(args) -> dict:
    consumer = make_consumer(args.bootstrap, args.topic)
    counter_mode = args.mode == "counter"
    tracks: dict[bytes, PvTrack] = {}
    names_seen: set[bytes] = set()
    latencies = array("d")
    to_broker = array("d")  # broker append time - EPICS timestamp (LogAppendTime topics)
    steps = Steps() if counter_mode and args.steps is not None else None
    window: dict | None = None
    control_mtime = None
    t0 = t1 = float("inf")
    in_window = total = 0
    next_progress = 0.0
    sample_p = 1 / args.sample  # random, not every n-th: FAKE PVs tick in a fixed order
    while True:
        # poll() returns as soon as one message is there (consume() would wait for a full
        # batch or its timeout, adding up to that timeout to the measured latency).
        first = consumer.poll(0.05)
        messages = [] if first is None else [first, *consumer.consume(BATCH, timeout=0)]
        now = time.time()
        counting = t0 <= now < t1
        for message in messages:
            value = message.value()
            if message.error() is not None or value is None or value[4:8] != b"f144":
                continue
            total += 1
            if counting:
                in_window += 1
            if counter_mode:
                name, ts, v = read_counter(value)
                track = tracks.get(name)
                if track is None:
                    tracks[name] = PvTrack(v, ts)
                else:
                    track.add(v, ts)
                if steps is not None:
                    kind, append_ms = message.timestamp()
                    steps.add(name, v, append_ms * 1e-3
                              if kind == TIMESTAMP_LOG_APPEND_TIME else now)
            elif random.random() < sample_p:
                name, ts = read_name_and_time(value)
                names_seen.add(name)
            else:
                continue
            if counting:
                latencies.append(now - ts * 1e-9)
                kind, append_ms = message.timestamp()
                if kind == TIMESTAMP_LOG_APPEND_TIME:
                    to_broker.append(append_ms * 1e-3 - ts * 1e-9)
        if now >= next_progress:
            next_progress = now + PROGRESS_EVERY_S
            seen = len(tracks) if counter_mode else len(names_seen)
            progress = {"t": now, "total": total, "pvs": seen}
            if steps is not None:
                progress["oldest"] = steps.oldest()
            _write(args.progress, progress)
            mtime = args.control.stat().st_mtime_ns if args.control.exists() else None
            if mtime != control_mtime:
                control_mtime = mtime
                window = json.loads(args.control.read_text())
                t0 = window["t0"]
                t1 = window["t1"] if window["t1"] is not None else float("inf")
                if steps is not None:
                    steps.since = t0
        if window is not None and now >= t1:
            if now >= t1 + window["drain"]:
                break
            if not counter_mode:
                break
            caught_up = window.get("caught_up", t1)
            if caught_up is not None and len(tracks) >= args.expect and all(
                t.last_ts >= caught_up * 1e9 for t in tracks.values()
            ):
                break
    consumer.close()
    if counter_mode and args.received is not None:
        _write(args.received, {n.decode(errors="replace"): t.received.runs
                               for n, t in tracks.items()})
    if steps is not None:
        _write(args.steps, steps.dump())
    lat_ms = np.frombuffer(latencies, dtype=np.float64) * 1000 if latencies else np.zeros(1)
    seen = len(tracks) if counter_mode else len(names_seen)
    return {
        "mode": args.mode,
        "window_s": t1 - t0,
        "window_count": in_window,
        "rate": in_window / (t1 - t0),
        "total": total,
        "pvs_seen": seen,
        "missing_pvs": max(args.expect - seen, 0) if counter_mode else None,
        "gaps": sum(t.gaps for t in tracks.values()) if counter_mode else None,
        "repeats": sum(t.repeats for t in tracks.values()) if counter_mode else None,
        "latency_samples": len(latencies),
        "lat_p50_ms": float(np.percentile(lat_ms, 50)),
        "lat_p99_ms": float(np.percentile(lat_ms, 99)),
        "lat_max_ms": float(lat_ms.max()),
        **_split(to_broker),
        "latency_hist_ms": np.percentile(lat_ms, np.linspace(0, 100, 201)).tolist(),
        "consumer_cpu_s": time.process_time(),
    }


def _split(to_broker: array) -> dict:
    """Where the latency goes: EPICS timestamp -> broker append (forwarder, producer batching,
    network), the rest being broker -> consumer."""
    if not to_broker:
        return {}
    ms = np.frombuffer(to_broker, dtype=np.float64) * 1000
    return {
        "to_broker_p50_ms": float(np.percentile(ms, 50)),
        "to_broker_p99_ms": float(np.percentile(ms, 99)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--mode", choices=("counter", "count"), default="counter")
    parser.add_argument("--expect", type=int, default=0, help="PVs expected (counter mode)")
    parser.add_argument("--sample", type=int, default=8, help="decode 1 in N (count mode)")
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--progress", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--received", type=Path, default=None,
                        help="counter mode: write each PV's received values (as runs) here")
    parser.add_argument("--steps", type=Path, default=None,
                        help="counter mode: write each PV's irregular steps (Steps) here")
    args = parser.parse_args()
    _write(args.out, run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
