"""One measurement on the rig: a forwarder build, a set of streams, a consumer, a window.

``Bench`` holds what the scenarios share (broker, EPICS network, work dir, progress
printer, memory cap); ``measure_streams`` starts a fresh forwarder on fresh topics, adds the
streams, waits (polling, with deadlines) until the consumer sees every PV, then measures for
a fixed window: the consumer's throughput and latency, the generator's real rate and the
values it made that never arrived (read from its counters at the window's edges), and the
forwarder's CPU and RSS. A forwarder over the memory cap is stopped and its row says so.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from bench import procstats, profile
from bench.counter_snapshot import Snapshot, offered_rate, open_counters
from bench.delivery import account
from bench.memory_guard import DEFAULT_CAP_MB, RssGuard
from helpers import kafka_helpers
from helpers.forwarder_control import ForwarderControl, Stream, now_ms
from helpers.polling import wait_until
from helpers.rig.api import EpicsNetwork, ForwarderSpec
from helpers.rig.local.forwarder import LocalForwarder
from helpers.rig.paths import REPO_ROOT
from helpers.rig.processes import ManagedProcess

START_TIMEOUT_S = 60.0
FLOW_TIMEOUT_S = 120.0
STALL_S = 15.0  # no new PV for this long: the missing ones are not coming
SETTLE_S = 2.0  # after the last PV first shows up, before the window opens
DRAIN_S = 10.0
RSS_SAMPLE_S = 1.0
PROGRESS_EVERY_S = 60.0
_admins: dict[str, AdminClient] = {}


class Progress:
    """One line per step, with the time since the run began."""

    def __init__(self):
        self.began = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.began:7.1f}s] {text}", flush=True)


@dataclass
class Bench:
    bootstrap: str
    network: EpicsNetwork
    workdir: Path
    say: Progress
    quick: bool = False
    memory_cap_mb: float = DEFAULT_CAP_MB
    kafka: object = None  # the LocalKafka, for scenarios that stop and start it
    outage_s: float | None = None  # broker down time of the outage scenario (None: default)
    profile: bool = False  # py-spy each measured window (bench.profile)
    _numbers: int = 0

    def path(self, stem: str) -> Path:
        self._numbers += 1
        return self.workdir / f"{self._numbers:03d}-{stem}"


@dataclass
class Row:
    """One line of the results table."""

    build: str
    scenario: str
    kind: str  # "forwarder" or "generator"
    offered: float | None  # nominal: the scenario's label, not a measurement
    rate: float | None
    loss: int | None = None  # values skipped (a later one arrived)
    offered_measured: float | None = None  # what the generator made, read from its counters
    backlog: int | None = None  # values made in the window that had not arrived by the end
    zero_loss: bool | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    cpu_us: float | None = None
    rss_start_mb: float | None = None
    rss_steady_mb: float | None = None
    rss_growth_mb_h: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


class RunningForwarder:
    """A forwarder of one build on fresh config/status topics, with its control client;
    members of one group share ``config_topic`` (each keeps a status topic of its own, so
    its status says what it forwards)."""

    def __init__(self, bench: Bench, build: Path, extra_args: Sequence[str] = (),
                 config_topic: str | None = None):
        cfg = config_topic or kafka_helpers.unique_topic("bench-cfg")
        status = kafka_helpers.unique_topic("bench-status")
        kafka_helpers.create_topics(bench.bootstrap, [status] if config_topic else [cfg, status])
        spec = ForwarderSpec(None, cfg, status, extra_args=("-v", "Warning", *extra_args))
        self.process = LocalForwarder(
            spec,
            build=build,
            bootstrap=bench.bootstrap,
            sasl_bootstrap=None,
            network=bench.network,
            label="bench-fwd",
        )
        self.control = ForwarderControl(bench.bootstrap, cfg, status)

    def __enter__(self) -> RunningForwarder:
        self.process.start()
        try:
            self.control.wait_for_status(timeout=START_TIMEOUT_S, what="the first status")
        except BaseException:
            self.close()
            raise
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        self.control.close()
        self.process.stop()

    def __exit__(self, *exc) -> None:
        self.close()


def group_args(bench: Bench, name: str = "bench") -> tuple[str, ...]:
    """``--group NAME`` with a new storage topic (a group needs one)."""
    storage = kafka_helpers.unique_topic("bench-storage")
    kafka_helpers.create_topics(bench.bootstrap, [storage])
    return ("--group", name, "--storage-topic", f"{bench.bootstrap}/{storage}")


def create_data_topic(bootstrap: str, name: str, timeout: float = 30.0) -> None:
    """A one-partition topic stamped with the broker's append time, so the consumer can tell
    the forwarder's share of the latency from the consumer side's."""
    admin = _admins.get(bootstrap)
    if admin is None:  # one per broker: a dropped AdminClient logs a purge warning
        admin = _admins[bootstrap] = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    topic = NewTopic(name, num_partitions=1, replication_factor=1,
                     config={"message.timestamp.type": "LogAppendTime"})
    admin.create_topics([topic])[name].result(timeout=timeout)


def close_clients() -> None:
    """Drop the cached admin clients (before the broker stops, so they do not log its loss)."""
    _admins.clear()


def _wait_exit(proc: ManagedProcess, timeout: float, what: str) -> None:
    wait_until(lambda: not proc.is_running(), timeout=timeout, what=what, interval=0.1)


def read_json(path: Path) -> dict | None:
    """A JSON file another process writes (None while it is missing or half written)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _sleep_until(t: float) -> None:
    """Wait for a window edge: the window is a fixed length on purpose (a benchmark)."""
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.2))


def growth_mb_per_hour(samples: Sequence[tuple[float, int]]) -> float | None:
    """Least-squares slope of RSS over time, in MB per hour."""
    if len(samples) < 3:
        return None
    import numpy as np

    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples], dtype=float)
    slope = np.polyfit(t - t[0], rss, 1)[0]
    return float(slope * 3600 / 1e6)


def consumer_files(base: Path, *extra: str) -> dict[str, Path]:
    """The consumer's control, progress, result and received-values files for one run, and
    the ``extra`` ones asked for (each an option of bench.consumer, e.g. "steps")."""
    return {k: base.with_name(f"{base.name}.{k}.json")
            for k in ("control", "progress", "out", "received", *extra)}


def start_consumer(bench: Bench, topic: str, mode: str, expect: int,
                   files: dict[str, Path]) -> ManagedProcess:
    """The checking consumer (bench.consumer) in its own process, reading ``topic``."""
    return ManagedProcess(
        f"bench-consumer-{files['out'].stem}",
        [sys.executable, "-m", "bench.consumer", "--bootstrap", bench.bootstrap,
         "--topic", topic, "--mode", mode, "--expect", str(expect),
         *(arg for k, p in files.items() for arg in (f"--{k}", str(p)))],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    ).start()


def write_control(path: Path, **window) -> None:
    """Tell the consumer the window (t0, t1 epoch s; t1 None while open), the drain and
    ``caught_up`` (epoch s: a PV has caught up once it delivered a value stamped later)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(window))
    os.replace(tmp, path)


def wait_flowing(bench: Bench, consumer: ManagedProcess, files: dict[str, Path], expect: int,
                 guard: RssGuard, what: str) -> dict:
    """Wait until the consumer has seen every PV, or some never come (counted as
    undelivered) and no new one has for a while, or the memory cap stopped the forwarder
    (the window is still measured, so the row shows what it did not deliver)."""
    stall = {"pvs": -1, "since": time.monotonic()}

    def all_flowing():
        if not consumer.is_running():
            raise RuntimeError(f"consumer exited: {consumer.tail()}")
        guard.check()
        progress = read_json(files["progress"])
        if guard.stopped:
            return progress or {"pvs": 0}
        if not progress:
            return None
        if progress["pvs"] != stall["pvs"]:
            stall.update(pvs=progress["pvs"], since=time.monotonic())
        if progress["pvs"] >= expect:
            return progress
        if progress["pvs"] and time.monotonic() - stall["since"] > STALL_S:
            bench.say(f"{what}: only {progress['pvs']} of {expect} PVs deliver; "
                      "measuring anyway")
            return progress
        return None

    return wait_until(all_flowing, timeout=FLOW_TIMEOUT_S, what=f"values from all {expect} PVs",
                      seen=lambda: read_json(files["progress"]), interval=0.2)


def updated_since(entries: Sequence[dict], since_ms: int) -> int:
    """Status stream entries CONNECTED with an update sent at or after ``since_ms`` (EPICS
    time of the update, ``last_update_ms``)."""
    return sum(
        1
        for entry in entries
        if entry.get("connection") == "CONNECTED" and (entry.get("last_update_ms") or 0) >= since_ms
    )


def wait_group_settled(control: ForwarderControl, streams: Sequence[Stream], members: int,
                       what: str) -> None:
    """Wait until ``members`` members split ``streams`` and every stream has sent a value
    from its owner since then (status ``last_update_ms``): a stream that moved while the
    group formed is silent until its new owner's subscription delivers."""
    control.wait_members_share({s.key for s in streams}, members, since_ms=0,
                               timeout=FLOW_TIMEOUT_S,
                               what=f"{what}: {members} members sharing {len(streams)} streams")
    shared_ms = now_ms()

    def fresh() -> int:
        return sum(
            updated_since(record.status.streams(), shared_ms)
            for record in control.newest_by_member(since_ms=shared_ms).values()
        )

    wait_until(lambda: fresh() >= len(streams), timeout=FLOW_TIMEOUT_S,
               what=f"{what}: every stream forwarding from its owner since the split",
               seen=lambda: f"{fresh()} of {len(streams)}", interval=0.5)


def watch_rss(guard: RssGuard, until: float, samples: list) -> None:
    """Sample RSS (and enforce the cap) until the epoch time ``until``: a fixed stretch of a
    scenario (before or after its fault), not a wait for something."""
    while (left := until - time.time()) > 0 and not guard.stopped:
        time.sleep(min(left, RSS_SAMPLE_S))
        samples.append((time.time(), guard.check()))


def wait_drained(consumer: ManagedProcess, timeout: float, guard: RssGuard) -> None:
    """Wait for the consumer to finish its drain, still watching the forwarder's memory."""

    def done():
        guard.check()
        return not consumer.is_running()

    wait_until(done, timeout=timeout, what="the consumer to finish", interval=0.2)


def read_counters(reader, what: str, say) -> Snapshot | None:
    """One reading of the generator's counters; None (said, not fatal) if it fails."""
    if reader is None:
        return None
    try:
        return reader.read()
    except Exception as err:  # noqa: BLE001 - the row then shows no measured rate
        say(f"{what}: reading the generator's counters failed: {short(err)}")
        return None


def short(err: object, limit: int = 300) -> str:
    """A message cut for stdout (the full text goes to the files)."""
    text = str(err) if not isinstance(err, BaseException) else f"{type(err).__name__}: {err}"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def measure_streams(
    bench: Bench,
    build: Path,
    *,
    build_label: str,
    scenario: str,
    streams: Sequence[Stream] | None = None,
    make_streams=None,
    offered: float,
    duration: float,
    mode: str = "counter",
    extra_args: Sequence[str] = (),
    rss_every: float = RSS_SAMPLE_S,
    members: int = 1,
) -> Row:
    """Run one forwarder with ``streams`` (or ``make_streams(topic)``) for ``duration`` s.

    ``members`` > 1: the forwarder is a group of that many (``--workers``); the window opens
    only once they have split the streams, so that the joining members' handovers (values
    made while a stream changes owner are not forwarded) fall before it."""
    topic = kafka_helpers.unique_topic("bench-data")
    create_data_topic(bench.bootstrap, topic)
    streams = list(streams) if streams is not None else list(make_streams(topic))
    names = [s.channel for s in streams]
    what = f"{scenario} [{build_label}]"
    reader = open_counters(bench.network, names, streams[0].protocol) if mode == "counter" \
        else None
    files = consumer_files(bench.path(f"{scenario}-{build_label}"))
    consumer = start_consumer(bench, topic, mode, len(streams), files)
    snaps: list[Snapshot | None] = [None, None]
    shares = None
    try:
        with RunningForwarder(bench, build, extra_args) as fwd:
            guard = RssGuard(fwd.pid, bench.memory_cap_mb, bench.say, what)
            bench.say(f"{what}: forwarder pid {fwd.pid} up; adding {len(streams)} streams")
            fwd.control.add(streams)
            if members > 1:
                wait_group_settled(fwd.control, streams, members, what)
            flowing = wait_flowing(bench, consumer, files, len(streams), guard, what)
            t0 = time.time() + SETTLE_S
            t1 = t0 + duration
            write_control(files["control"], t0=t0, t1=t1, drain=DRAIN_S,
                          caught_up=None if reader else t1)
            bench.say(f"{what}: {flowing['pvs']} PVs flowing; measuring {duration:.0f} s")
            _sleep_until(t0)
            snaps[0] = read_counters(reader, what, bench.say)
            spy_out = files["received"].with_name(files["received"].name + ".pyspy.txt")
            spy = profile.start(fwd.pid, duration, spy_out) if bench.profile else None
            cpu0 = procstats.cpu_seconds(fwd.pid)
            threads0 = procstats.thread_cpu(fwd.pid)
            rss = [(time.time(), guard.check())]
            next_note = t0 + PROGRESS_EVERY_S
            while time.time() < t1 and not guard.stopped:
                _sleep_until(min(t1, time.time() + rss_every))
                rss.append((time.time(), guard.check()))
                if time.time() >= next_note:  # long windows (the soak): show it is alive
                    next_note += PROGRESS_EVERY_S
                    bench.say(f"{what}: {time.time() - t0:.0f} s of "
                              f"{duration:.0f} s, RSS {rss[-1][1] / 1e6:.1f} MB")
            cpu1 = procstats.cpu_seconds(fwd.pid) if not guard.stopped else None
            threads = procstats.cpu_split(threads0, procstats.thread_cpu(fwd.pid))
            shares = profile.finish(spy, spy_out, 30) if spy is not None else None
            _sleep_until(t1)  # a stopped forwarder's window still ends at t1
            snaps[1] = read_counters(reader, what, bench.say)
            if reader is not None:
                write_control(files["control"], t0=t0, t1=t1, drain=DRAIN_S,
                              caught_up=snaps[1].ended if snaps[1] else t1)
            alive = fwd.process.is_running()
            wait_drained(consumer, DRAIN_S + 30, guard)
    finally:
        consumer.stop()
        if reader is not None:
            reader.close()
    result = read_result(files, consumer)
    cpu_s = None if cpu1 is None else cpu1 - cpu0
    row = consumer_row(build_label, scenario, offered, mode, result, cpu_s, rss, alive)
    add_delivery(row, snaps[0], snaps[1], files["received"], names)
    if guard.stopped:
        row.note = f"{guard.note()}; {row.note}".strip("; ")
        row.zero_loss = False
    row.extra["cpu_by_thread"] = threads
    row.extra["rss_peak_mb"] = guard.peak / 1e6
    if shares is not None:
        row.extra["profile"] = shares
        row.note = f"{row.note}; profile: {profile.describe(shares)}".strip("; ")
    if threads:
        row.note = f"{row.note}; threads: {threads}".strip("; ")
    return row


def add_delivery(row: Row, start: Snapshot | None, end: Snapshot | None, received_path: Path,
                 names: Sequence[str]) -> None:
    """Fill the measured offered rate, loss and backlog from the generator's counters."""
    if start is None or end is None:
        if row.loss is not None:
            row.note = ("offered not measured (counters unread); loss from counter gaps only, "
                        f"backlog unknown; {row.note}").strip("; ")
        return
    received = read_json(received_path) or {}
    got = account(start.values, end.values, received, names)
    row.offered_measured = offered_rate(start, end)
    row.loss = got.lost
    row.backlog = got.backlog
    row.zero_loss = bool(row.zero_loss) and got.undelivered == 0 and got.pvs_read == got.pvs
    if got.pvs_read < got.pvs:
        row.note = f"{got.pvs - got.pvs_read} PVs unread at the generator; {row.note}"
    if got.backlog:
        row.note = (f"{got.backlog} values undelivered at the end of the drain; "
                    f"{row.note}").strip("; ")
    row.extra["delivery"] = {"made": got.made, "delivered": got.delivered, "lost": got.lost,
                             "backlog": got.backlog, "pvs": got.pvs, "pvs_read": got.pvs_read,
                             "read_s": [start.ended - start.began, end.ended - end.began]}


def read_result(files: dict[str, Path], consumer: ManagedProcess) -> dict:
    """The consumer's result file (it has finished)."""
    result = read_json(files["out"])
    if result is None:
        raise RuntimeError(f"consumer wrote no result; log {consumer.log_path}")
    return result


def consumer_row(build_label, scenario, offered, mode, result, cpu_s, rss, alive) -> Row:
    """A forwarder's row from the consumer's result, its CPU seconds and RSS samples."""
    count = result["window_count"]
    if mode == "counter":
        loss = result["gaps"] + (result["missing_pvs"] or 0)
        zero = loss == 0
        note = f"repeats {result['repeats']}" if result["repeats"] else ""
        if result["missing_pvs"]:
            note = f"{result['missing_pvs']} PVs never delivered; {note}".strip("; ")
    else:
        # FAKE values are random: no counter to check, so "loss" is the shortfall in rate.
        loss = None
        # The FAKE timer drifts a little even when idle (~95% of nominal at 10 PVs).
        zero = result["rate"] >= 0.9 * offered
        note = "count only (FAKE values are random)"
    if "to_broker_p50_ms" in result:
        note = (f"EPICS->broker p50/p99 {result['to_broker_p50_ms']:.1f}/"
                f"{result['to_broker_p99_ms']:.1f} ms; {note}").strip("; ")
    if not alive:
        note = (note + "; forwarder died").strip("; ")
    steady = rss[len(rss) // 2 :]
    return Row(
        build=build_label,
        scenario=scenario,
        kind="forwarder",
        offered=offered,
        rate=result["rate"],
        loss=loss,
        zero_loss=zero,
        p50_ms=result["lat_p50_ms"],
        p99_ms=result["lat_p99_ms"],
        max_ms=result["lat_max_ms"],
        cpu_us=cpu_s / count * 1e6 if count and cpu_s is not None else None,
        rss_start_mb=rss[0][1] / 1e6,
        rss_steady_mb=sum(r for _, r in steady) / len(steady) / 1e6,
        rss_growth_mb_h=None,  # a few seconds say nothing about growth; the soak sets it
        note=note,
        extra={
            "cpu_s": cpu_s,
            "window_count": count,
            "consumer": {k: v for k, v in result.items() if k != "latency_hist_ms"},
            "latency_quantiles_ms": result["latency_hist_ms"],
            "rss_samples": rss,
        },
    )


def generator_row(bench: Bench, *, scenario: str, protocol: str, names: Sequence[str],
                  offered: float, seconds: float) -> Row:
    """Monitor the load generator alone (no forwarder) and report what it delivers."""
    out = bench.path(f"gen-{scenario}").with_suffix(".json")
    proc = ManagedProcess(
        f"bench-gen-{out.stem}",
        [sys.executable, "-m", "bench.gen_check", "--protocol", protocol,
         "--seconds", str(seconds), "--out", str(out), *names],
        cwd=REPO_ROOT,
        env={**os.environ, **bench.network.client_env(), "PYTHONPATH": str(REPO_ROOT)},
    ).start()
    try:
        _wait_exit(proc, seconds + 90, f"the {protocol} generator check")
    finally:
        proc.stop()
    result = read_json(out)
    if result is None:
        raise RuntimeError(f"generator check wrote no result; log {proc.log_path}")
    loss = result["gaps"] + (result["pvs"] - result["connected"])
    return Row(
        build="(generator)",
        scenario=scenario,
        kind="generator",
        offered=offered,
        rate=result["rate"],
        loss=loss,
        zero_loss=loss == 0 and result["rate"] >= 0.95 * offered,
        p50_ms=result["lat_p50_ms"],
        p99_ms=result["lat_p99_ms"],
        max_ms=result["lat_max_ms"],
        note=f"{protocol} monitor client alone, client CPU "
        f"{result['cpu_s'] / max(result['seconds'], 1e-9) * 100:.0f}%",
        extra=result,
    )
