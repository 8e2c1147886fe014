"""The failover scenario: CA counters shared by a group of three forwarders, one SIGKILLed.

Separate member processes (not ``--workers``, whose parent would restart the one killed)
share one config topic, group and storage topic. Once every PV flows from its settled owner,
one member is killed; its streams must resume on the survivors (README "Scaling out": about
10 s). Per build: how many PVs went silent across the kill (moved), the longest such silence
(broker append times of the last value before and the first after), the time until every PV
flowed again, the counter values skipped across the silences (lost) and any value received
twice (repeats), from the consumer's ``--steps`` (bench.consumer.Steps).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import procstats
from bench.counter_snapshot import CaCounters
from bench.harness import (
    FLOW_TIMEOUT_S,
    Bench,
    Row,
    RunningForwarder,
    add_delivery,
    consumer_files,
    consumer_row,
    create_data_topic,
    group_args,
    read_counters,
    read_json,
    read_result,
    short,
    start_consumer,
    wait_drained,
    watch_rss,
    write_control,
)
from bench.memory_guard import RssGuard
from helpers import kafka_helpers
from helpers.forwarder_control import Stream, split_exactly, status_streams
from helpers.polling import WaitTimeout, wait_until
from helpers.rig.processes import ManagedProcess

MEMBERS = 3
LEAD_S = 1.0  # the window opens this long after the control file is written (read each 0.25 s)
BEFORE_S = 5.0  # every PV flowing from its settled owner, before the kill
AFTER_S = 10.0  # after every PV flows again: repeats or late losses would show here
IN_FLIGHT_S = 1.0  # a killed member's values already on the wire may land this much later
MOVED_S = 1.0  # a silence across the kill this long means the PV changed owner
RESUME_TIMEOUT_S = 120.0  # 12 times the documented bound
DRAIN_S = 10.0


@dataclass
class Handover:
    """What the kill did to the PVs, from the consumer's steps."""

    moved: int = 0  # PVs silent for MOVED_S or more across the kill
    longest_s: float = 0.0  # the longest such silence
    longest_pv: str | None = None
    all_back_s: float | None = None  # kill to the first value of the last moved PV
    lost: int = 0  # counter values skipped across those silences
    lost_elsewhere: int = 0  # skipped in any other step of the window
    repeats: int = 0  # values at or below one already received, in the window
    not_back: int = 0  # PVs with no value since the kill (and its in-flight margin)


def handover(pvs: dict[str, dict], killed_at: float) -> Handover:
    """Figures from ``Steps.dump()`` (per PV "last" append time and "steps" [t_before,
    t_after, before, after]); a PV's handover is its longest step across ``killed_at``."""
    out = Handover()
    for name, pv in pvs.items():
        if pv["last"] < killed_at + IN_FLIGHT_S:
            out.not_back += 1
        across = None
        for step in pv["steps"]:
            t_before, t_after, before, after = step
            if after <= before:
                out.repeats += 1
            if (
                t_before <= killed_at + IN_FLIGHT_S
                and t_after >= killed_at
                and t_after - t_before >= MOVED_S
                and (across is None or t_after - t_before > across[1] - across[0])
            ):
                across = step
        for step in pv["steps"]:
            skipped = max(0, int(round(step[3] - step[2])) - 1)
            if step is across:
                out.lost += skipped
            else:
                out.lost_elsewhere += skipped
        if across is None:
            continue
        out.moved += 1
        silence = across[1] - across[0]
        if silence > out.longest_s:
            out.longest_s, out.longest_pv = silence, name
        back = across[1] - killed_at
        out.all_back_s = back if out.all_back_s is None else max(out.all_back_s, back)
    return out


class GroupGuard:
    """The members' RSS guards as one, for the harness's waits (RSS summed; a dead member's
    is 0)."""

    def __init__(self, guards: Sequence[RssGuard]):
        self.guards = list(guards)

    @property
    def stopped(self) -> bool:
        return any(g.stopped for g in self.guards)

    @property
    def peak(self) -> int:
        return sum(g.peak for g in self.guards)

    def check(self) -> int:
        return sum(g.check() for g in self.guards)

    def note(self) -> str:
        return "; ".join(n for g in self.guards if (n := g.note()))


def measure_failover(
    bench: Bench,
    builds: Sequence[tuple[str, Path]],
    names: Sequence[str],
    nominal: float,
    say_row: Callable[[Row], None],
) -> list[Row]:
    """One row per build; the load IOC serving ``names`` is already up."""
    rows = []
    for label, build in builds:
        rows.append(_one_build(bench, build, label, names, nominal))
        say_row(rows[-1])
    return rows


def _wait_shared(members: Sequence[RunningForwarder], expected: set, what: str) -> list[int]:
    """Wait until the members' newest statuses split ``expected`` between them, every member
    with a share and no stream listed twice: the group has settled. Returns the shares."""

    def listed() -> list[set]:
        out = []
        for fwd in members:
            status = fwd.control.latest_status()
            out.append(status_streams(status) if status is not None else set())
        return out

    def shared():
        shares = listed()
        return [len(s) for s in shares] if split_exactly(shares, expected) else None

    return wait_until(
        shared,
        timeout=FLOW_TIMEOUT_S,
        what=what,
        interval=0.5,
        seen=lambda: f"shares {[len(s) for s in listed()]} of {len(expected)}",
    )


def _wait_all_since(
    consumer: ManagedProcess,
    files: dict[str, Path],
    expect: int,
    since: float,
    guard: GroupGuard,
    timeout: float,
    what: str,
) -> dict:
    """Wait until the consumer has a value of every PV appended at or after ``since``."""

    def fresh():
        if not consumer.is_running():
            raise RuntimeError(f"consumer exited: {consumer.tail()}")
        guard.check()
        progress = read_json(files["progress"])
        if progress and progress["pvs"] >= expect and (progress.get("oldest") or 0) >= since:
            return progress
        return None

    return wait_until(
        fresh, timeout=timeout, what=what, interval=0.2, seen=lambda: read_json(files["progress"])
    )


def _cpu(pids: Sequence[int]) -> float:
    return sum(procstats.cpu_seconds(p) for p in pids)


def _one_build(bench: Bench, build: Path, label: str, names: Sequence[str], nominal: float) -> Row:
    what = f"failover [{label}]"
    topic = kafka_helpers.unique_topic("bench-data")
    create_data_topic(bench.bootstrap, topic)
    streams = [Stream(n, "f144", topic, "CA") for n in names]
    expected = {s.key for s in streams}
    reader = CaCounters(bench.network, names)
    files = consumer_files(bench.path(f"failover-{label}"), "steps")
    consumer = start_consumer(bench, topic, "counter", len(names), files)
    config_topic = kafka_helpers.unique_topic("bench-cfg")
    kafka_helpers.create_topics(bench.bootstrap, [config_topic])
    args = group_args(bench)
    rss: list[tuple[float, int]] = []
    resumed_note = ""
    try:
        with ExitStack() as stack:
            members = [
                stack.enter_context(RunningForwarder(bench, build, args, config_topic))
                for _ in range(MEMBERS)
            ]
            guard = GroupGuard(
                [
                    RssGuard(m.pid, bench.memory_cap_mb, bench.say, f"{what} member {i}")
                    for i, m in enumerate(members)
                ]
            )
            bench.say(
                f"{what}: {MEMBERS} members up (pids {[m.pid for m in members]}); "
                f"adding {len(streams)} streams"
            )
            members[0].control.add(streams)
            shares = _wait_shared(members, expected, f"{MEMBERS} members sharing the streams")
            settled = time.time()
            bench.say(f"{what}: shares {shares}; waiting for a value of every PV since then")
            _wait_all_since(
                consumer,
                files,
                len(names),
                settled,
                guard,
                FLOW_TIMEOUT_S,
                f"a value of all {len(names)} PVs since the group settled",
            )
            t0 = time.time() + LEAD_S
            write_control(files["control"], t0=t0, t1=None, drain=DRAIN_S, caught_up=None)
            watch_rss(guard, t0, rss)
            start = read_counters(reader, what, bench.say)
            cpu0 = _cpu([m.pid for m in members])
            watch_rss(guard, t0 + BEFORE_S, rss)
            victim, survivors = members[-1], members[:-1]
            victim_listed = shares[-1]
            victim_cpu = procstats.cpu_seconds(victim.pid)
            bench.say(f"{what}: SIGKILL to member pid {victim.pid} ({victim_listed} streams)")
            killed_at = time.time()
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait_exit(10)
            try:
                _wait_all_since(
                    consumer,
                    files,
                    len(names),
                    killed_at + IN_FLIGHT_S,
                    guard,
                    RESUME_TIMEOUT_S,
                    "a value of every PV since the kill",
                )
                bench.say(
                    f"{what}: every PV flows again ({time.time() - killed_at:.1f} s after the kill)"
                )
            except WaitTimeout as err:
                resumed_note = f"not every PV flowed again within {RESUME_TIMEOUT_S:.0f} s"
                bench.say(f"{what}: {resumed_note}: {short(err)}")
            watch_rss(guard, time.time() + AFTER_S, rss)
            t1 = time.time()
            end = read_counters(reader, what, bench.say)
            cpu1 = _cpu([m.pid for m in survivors]) if not guard.stopped else None
            write_control(
                files["control"], t0=t0, t1=t1, drain=DRAIN_S, caught_up=end.ended if end else t1
            )
            alive = all(m.process.is_running() for m in survivors)
            wait_drained(consumer, DRAIN_S + 30, guard)
    finally:
        consumer.stop()
        reader.close()
    result = read_result(files, consumer)
    cpu_s = None if cpu1 is None else cpu1 - cpu0 + victim_cpu
    row = consumer_row(label, "failover", nominal, "counter", result, cpu_s, rss, alive)
    add_delivery(row, start, end, files["received"], names)
    got = handover(read_json(files["steps"]) or {}, killed_at)
    _failover_fields(row, got, victim_listed, guard, resumed_note)
    return row


def _failover_fields(
    row: Row, got: Handover, victim_listed: int, guard: GroupGuard, resumed_note: str
) -> None:
    """The handover's figures into the row's note and extra["failover"]."""
    back = "-" if got.all_back_s is None else f"{got.all_back_s:.1f} s"
    parts = [
        f"killed member listed {victim_listed}; {got.moved} PVs moved, longest silence "
        f"{got.longest_s:.1f} s, all back after {back}, lost {got.lost} "
        f"(+{got.lost_elsewhere} elsewhere), repeats {got.repeats}"
    ]
    if got.not_back:
        parts.append(f"{got.not_back} PVs never flowed again")
    for extra in (resumed_note, guard.note(), row.note):
        if extra:
            parts.append(extra)
    row.note = "; ".join(parts)
    row.extra["failover"] = {"members": MEMBERS, "victim_listed": victim_listed, **asdict(got)}
