"""The benchmark scenarios. Each takes the Bench and the builds [(label, path)] and returns
rows; builds are measured one after another against the same broker and load IOC."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench import procstats
from bench.failover import measure_failover
from bench.harness import (
    Bench,
    Row,
    RunningForwarder,
    generator_row,
    group_args,
    growth_mb_per_hour,
)
from bench.harness import measure_streams as measure
from bench.ioc_restarts import ioc_restarts
from bench.load_ioc import LoadIoc, array_names, counter_names
from bench.outage import measure_outage
from bench.pva_load import PvaLoadServer
from bench.pva_load import names as pva_names
from helpers.forwarder_control import Stream
from helpers.polling import WaitTimeout

Builds = list[tuple[str, Path]]
RATE_HZ = 10
PREFIX = "BENCH:"
P4P_PREFIX = "BENCH:P4P:"


def _streams(names, protocol):
    return lambda topic: [Stream(n, "f144", topic, protocol) for n in names]


def _window(bench: Bench, quick_s: float, full_s: float) -> float:
    return quick_s if bench.quick else full_s


class _Ioc:
    """The load IOC for one scenario, started and stopped around it."""

    def __init__(self, bench: Bench, tag: str, *, count: int = 0, arrays: int = 0):
        self.bench = bench
        self.ioc = LoadIoc(PREFIX, bench.network, bench.path(f"ioc-{tag}.db"),
                           count=count, arrays=arrays, rate_hz=RATE_HZ)

    def __enter__(self) -> LoadIoc:
        self.bench.say(f"load IOC: {self.ioc.count} counters + {self.ioc.arrays} arrays "
                       f"at {RATE_HZ} Hz; starting")
        self.ioc.start()
        self.bench.say(f"load IOC up (pid {self.ioc.pid})")
        return self.ioc

    def __exit__(self, *exc) -> None:
        self.ioc.stop()


def fake_max(bench: Bench, builds: Builds) -> list[Row]:
    """FAKE PVs at a 1 ms period, stepped up: the forwarder's own limit without EPICS.

    The FAKE timer itself falls behind as ticks get big, so a row is "sustained" at 90% of
    nominal, and stepping goes on while the forwarded rate still grows by 10% a step.
    """
    steps = [10, 100, 300] if bench.quick else [10, 100, 300, 1000]
    rows = []
    for label, build in builds:
        best = 0.0
        for n in steps:
            names = [f"{PREFIX}FAKE{i}" for i in range(n)]
            row = measure(bench, build, build_label=label, scenario="fake-max",
                          make_streams=_streams(names, "FAKE"), offered=n * 1000.0,
                          duration=_window(bench, 5, 15), mode="count",
                          extra_args=("--fake-pv-period", "1"))
            rows.append(row)
            bench.say(summary_line(row))
            if row.rate < 1.1 * best or row.p99_ms > 1000:
                break
            best = max(best, row.rate)
    return rows


def _scalar(protocol: str, count: int = 1000) -> Callable[[Bench, Builds], list[Row]]:
    def scenario(bench: Bench, builds: Builds) -> list[Row]:
        name = f"{protocol.lower()}-{count}x{RATE_HZ}Hz"
        names = counter_names(PREFIX, count)
        with _Ioc(bench, name, count=count):
            rows = [generator_row(bench, scenario=name, protocol=protocol.lower(), names=names,
                                  offered=count * RATE_HZ, seconds=_window(bench, 3, 5))]
            bench.say(summary_line(rows[-1]))
            for label, build in builds:
                rows.append(measure(bench, build, build_label=label, scenario=name,
                                    make_streams=_streams(names, protocol),
                                    offered=count * RATE_HZ, duration=_window(bench, 10, 30)))
                bench.say(summary_line(rows[-1]))
        return rows

    return scenario


def arrays(bench: Bench, builds: Builds) -> list[Row]:
    """1000-element double arrays (circular buffers of a counter) over CA and PVA: 200 at
    10 Hz, 16 MB/s of payload, enough updates that the per-update CPU is the arrays' own and
    not the process's idle cost spread over few."""
    count = 200
    names = array_names(PREFIX, count)
    rows = []
    with _Ioc(bench, "arrays", arrays=count):
        for protocol in ("CA", "PVA"):
            name = f"arrays-{protocol.lower()}-{count}x{RATE_HZ}Hz"
            rows.append(generator_row(bench, scenario=name, protocol=protocol.lower(),
                                      names=names, offered=count * RATE_HZ,
                                      seconds=_window(bench, 3, 5)))
            bench.say(summary_line(rows[-1]))
            for label, build in builds:
                rows.append(measure(bench, build, build_label=label, scenario=name,
                                    make_streams=_streams(names, protocol),
                                    offered=count * RATE_HZ, duration=_window(bench, 10, 30)))
                bench.say(summary_line(rows[-1]))
    return rows


def step_up(bench: Bench, builds: Builds) -> list[Row]:
    """More PVs at 10 Hz until values are lost (or the rate falls short), CA then PVA."""
    steps = [1000, 2000, 4000] if bench.quick else [1000, 2000, 3000, 4000, 6000]
    rows = []
    with _Ioc(bench, "step-up", count=steps[-1]):
        for protocol in ("CA", "PVA"):
            name = f"step-up-{protocol.lower()}"
            checked: set[int] = set()
            for label, build in builds:
                for n in steps:
                    names = counter_names(PREFIX, n)
                    if n not in checked:
                        checked.add(n)
                        rows.append(generator_row(bench, scenario=name,
                                                  protocol=protocol.lower(), names=names,
                                                  offered=n * RATE_HZ, seconds=3))
                        bench.say(summary_line(rows[-1]))
                    row = measure(bench, build, build_label=label, scenario=name,
                                  make_streams=_streams(names, protocol),
                                  offered=n * RATE_HZ, duration=_window(bench, 8, 20))
                    rows.append(row)
                    bench.say(summary_line(row))
                    if not (row.zero_loss and row.rate >= 0.95 * row.offered):
                        break
    return rows


def _members_args(bench: Bench, workers: int) -> tuple[str, ...]:
    """One forwarder as it is, or ``--workers N``: a group of N members under one parent
    (a group needs a storage topic; each run gets a new one)."""
    if workers == 1:
        return ()
    return ("--workers", str(workers), *group_args(bench))


def step_up_workers(bench: Bench, builds: Builds) -> list[Row]:
    """CA counters at 10 Hz, more PVs until values are lost, for one forwarder and for
    ``--workers 2``: the highest zero-loss CA rate of each on this machine (CPU and RSS are
    the whole process tree, parent and members)."""
    # Steps of 5k updates/s: on this 2-core machine one member's limit is below 10k/s.
    steps = [500, 1000, 1500] if bench.quick else [500, 1000, 1500, 2000, 3000, 4000]
    rows = []
    with _Ioc(bench, "step-up-workers", count=steps[-1]):
        for label, build in builds:
            for workers in (1, 2):
                for n in steps:
                    names = counter_names(PREFIX, n)
                    row = measure(bench, build, build_label=label,
                                  scenario=f"step-up-ca-x{workers}",
                                  make_streams=_streams(names, "CA"), offered=n * RATE_HZ,
                                  duration=_window(bench, 8, 20),
                                  extra_args=_members_args(bench, workers), members=workers)
                    rows.append(row)
                    bench.say(summary_line(row))
                    if not (row.zero_loss and row.rate >= 0.95 * row.offered):
                        break
    return rows


def step_up_p4p(bench: Bench, builds: Builds) -> list[Row]:
    """100 PVs of the p4p load server at rising per-PV rates, until values are lost."""
    count = 100
    rates = [50, 200] if bench.quick else [50, 100, 200, 400]
    pv_names = pva_names(P4P_PREFIX, count)
    rows = []
    for rate in rates:
        server = PvaLoadServer(P4P_PREFIX, bench.network, count=count, rate=rate)
        bench.say(f"p4p load server: {count} PVs at {rate} Hz; starting")
        server.start()
        try:
            rows.append(generator_row(bench, scenario="step-up-p4p", protocol="pva",
                                      names=pv_names, offered=count * rate, seconds=3))
            bench.say(summary_line(rows[-1]))
            for label, build in builds:
                rows.append(measure(bench, build, build_label=label, scenario="step-up-p4p",
                                    make_streams=_streams(pv_names, "PVA"),
                                    offered=count * rate, duration=_window(bench, 8, 20)))
                bench.say(summary_line(rows[-1]))
        finally:
            server.stop()
        if not any(r.zero_loss and r.rate >= 0.95 * r.offered for r in rows[-len(builds):]):
            break
    return rows


def add_10k(bench: Bench, builds: Builds) -> list[Row]:
    """One fc00 ADD of 10,000 CA streams (names no IOC serves), timed until x5f2 lists all."""
    count = 10_000
    rows = []
    for label, build in builds:
        with RunningForwarder(bench, build) as fwd:
            topic = f"bench-add-{int(time.time())}"
            streams = [Stream(f"{PREFIX}NX{i}", "f144", topic, "CA") for i in range(count)]
            cpu0 = procstats.cpu_seconds(fwd.pid)
            rss0 = procstats.rss_bytes(fwd.pid)
            bench.say(f"add-10k [{label}]: sending one ADD of {count} streams")
            sent = fwd.control.add(streams)
            try:
                record = fwd.control.wait_for_status(
                    lambda r: len(r.status.streams()) >= count,
                    timeout=120,
                    what=f"a status listing {count} streams",
                    since_ms=int(sent * 1000) - 1000,
                )
            except WaitTimeout as err:
                raise WaitTimeout(f"{err}; {_save_newest_status(bench, fwd, label)}") from None
            took = record.kafka_timestamp_ms / 1000 - sent
            cpu = procstats.cpu_seconds(fwd.pid) - cpu0
            rss1 = procstats.rss_bytes(fwd.pid)
        rows.append(Row(build=label, scenario="add-10k", kind="forwarder", offered=None,
                        rate=None, cpu_us=cpu / count * 1e6, rss_start_mb=rss0 / 1e6,
                        rss_steady_mb=rss1 / 1e6,
                        note=f"all {count} in status after {took:.2f} s (target <= 10 s); "
                        "cpu_us is per added stream",
                        extra={"seconds": took, "cpu_s": cpu}))
        bench.say(f"add-10k [{label}]: {took:.2f} s, CPU {cpu:.1f} s, "
                  f"RSS {rss0 / 1e6:.0f} -> {rss1 / 1e6:.0f} MB")
    return rows


def _save_newest_status(bench: Bench, fwd: RunningForwarder, label: str) -> str:
    """The newest status in full to a file (too long for stdout); says where."""
    path = bench.path(f"add-10k-{label}-status.json")
    newest = fwd.control.statuses[-1].status if fwd.control.statuses else None
    path.write_text(newest.status_json if newest is not None else "no status")
    return f"newest status in {path}"


def soak(bench: Bench, builds: Builds, minutes: float) -> list[Row]:
    """CA 1000 x 10 Hz for ``minutes``, RSS sampled every 5 s: does memory stay flat?"""
    count = 1000
    names = counter_names(PREFIX, count)
    rows = []
    with _Ioc(bench, "soak", count=count):
        for label, build in builds:
            row = measure(bench, build, build_label=label, scenario="soak",
                          make_streams=_streams(names, "CA"), offered=count * RATE_HZ,
                          duration=minutes * 60, rss_every=5.0)
            samples = row.extra["rss_samples"]
            settled = samples[max(1, len(samples) // 5):]
            values = [r for _, r in settled]
            mean = sum(values) / len(values)
            flat = (max(values) - min(values)) / mean * 100
            row.rss_start_mb = settled[0][1] / 1e6
            row.rss_growth_mb_h = growth_mb_per_hour(settled)
            row.note = (f"{minutes:g} min; RSS spread after warm-up {flat:.1f}% "
                        f"(target within 5%) " + row.note).strip()
            row.extra["rss_flatness_pct"] = flat
            rows.append(row)
            bench.say(summary_line(row))
    return rows


def summary_line(row: Row) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    return (f"  -> {row.scenario} [{row.build}] nominal {f(row.offered, '.0f')}/s, "
            f"offered {f(row.offered_measured, '.0f')}/s, got {f(row.rate, '.0f')}/s, "
            f"loss {f(row.loss, 'd')}, backlog {f(row.backlog, 'd')}, "
            f"p99 {f(row.p99_ms, '.1f')} ms, CPU {f(row.cpu_us, '.1f')} us/upd {row.note}")


def outage(bench: Bench, builds: Builds) -> list[Row]:
    """CA 1000 x 10 Hz with the broker stopped for a while (bench.outage)."""
    count = 1000
    with _Ioc(bench, "outage", count=count):
        return measure_outage(bench, builds, counter_names(PREFIX, count),
                              nominal=count * RATE_HZ, say_row=lambda r: bench.say(summary_line(r)))


def failover(bench: Bench, builds: Builds) -> list[Row]:
    """CA 1000 x 10 Hz over a group of 3 forwarders, one SIGKILLed (bench.failover)."""
    count = 1000
    with _Ioc(bench, "failover", count=count):
        return measure_failover(bench, builds, counter_names(PREFIX, count),
                                nominal=count * RATE_HZ,
                                say_row=lambda r: bench.say(summary_line(r)))


SCENARIOS = {
    "fake-max": fake_max,
    "ca-1000x10Hz": _scalar("CA"),
    "pva-1000x10Hz": _scalar("PVA"),
    "arrays": arrays,
    "step-up": step_up,
    "step-up-p4p": step_up_p4p,
    "step-up-workers": step_up_workers,
    "add-10k": add_10k,
    "soak": soak,
    "outage": outage,
    "failover": failover,
    "ioc-restarts": lambda bench, builds: ioc_restarts(bench, builds, PREFIX),
}
