"""Benchmark forwarder builds side by side on the real rig: ``python -m bench.run``.

    python -m bench.run [--build PATH ...] [--compare PATH ...] [--quick]
                        [--scenarios NAME ...] [--soak-minutes N]
                        [--memory-cap-mb MB] [--outage-seconds S]

One Kafka broker (LocalKafka) and one EPICS network serve every build; each scenario starts
its own load IOC and measures the builds one after another against it. Results: a table on
stdout, JSON and PNG plots under logs/bench/. Figures depend on the machine and its load
(printed at start and end); a benchmark reports, it never fails on a slow figure. A
forwarder over the memory cap is stopped (its process group only) and its row says so.
Stdout gets short messages; full detail (tracebacks, what a wait saw) goes to the files.
"""

from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path

from bench import harness, procstats, report
from bench.harness import Bench, Progress, short
from bench.memory_guard import DEFAULT_CAP_MB
from bench.scenarios import SCENARIOS
from helpers.rig.forwarder_build import DEFAULT_BUILD, launch_command
from helpers.rig.local.kafka import LocalKafka
from helpers.rig.paths import LOG_DIR
from helpers.rig.ports import allocate_epics_network

OUT_DIR = LOG_DIR / "bench"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, action="extend", nargs="+", default=[], metavar="PATH",
                        help=f"forwarder build to measure (default {DEFAULT_BUILD})")
    parser.add_argument("--compare", type=Path, action="extend", nargs="+", default=[], metavar="PATH",
                        help="another build, measured the same way; adds a ratio column")
    parser.add_argument("--quick", action="store_true", help="short windows, fewer steps")
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS),
                        default=list(SCENARIOS), metavar="NAME",
                        help=f"subset of: {', '.join(SCENARIOS)}")
    parser.add_argument("--soak-minutes", type=float, default=None,
                        help="soak length (default 10, quick 1)")
    parser.add_argument("--memory-cap-mb", type=float, default=DEFAULT_CAP_MB,
                        help=f"stop a forwarder whose RSS goes over this (default "
                        f"{DEFAULT_CAP_MB:.0f})")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy each measured window; the row gets the CPU split by "
                        "pipeline stage (needs root or ptrace rights)")
    parser.add_argument("--outage-seconds", type=float, default=None,
                        help="broker down time in the outage scenario (default 60, quick 20)")
    return parser.parse_args(argv)


def label_builds(paths: list[Path]) -> list[tuple[str, Path]]:
    """(short unique label, path) per build; fails early if one is not a build."""
    out, used = [], set()
    for path in paths:
        launch_command(path)
        label = path.resolve().name or "build"
        n = 2
        base = label
        while label in used:
            label, n = f"{base}-{n}", n + 1
        used.add(label)
        out.append((label, path.resolve()))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    say = Progress()
    builds = label_builds((args.build or [DEFAULT_BUILD]) + args.compare)
    soak_minutes = args.soak_minutes if args.soak_minutes is not None else (
        1.0 if args.quick else 10.0)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = OUT_DIR / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = procstats.machine_load()
    say(f"bench: builds {', '.join(f'{lbl}={p}' for lbl, p in builds)}; {load_start}")
    kafka = LocalKafka(name="bench-kafka")
    rows, failed = [], []
    try:
        say("starting Kafka")
        kafka.start()
        say(f"Kafka up on {kafka.bootstrap}")
        bench = Bench(kafka.bootstrap, allocate_epics_network(), workdir, say, quick=args.quick,
                      memory_cap_mb=args.memory_cap_mb, kafka=kafka,
                      outage_s=args.outage_seconds, profile=args.profile)
        for name in args.scenarios:
            say(f"scenario {name}")
            try:
                if name == "soak":
                    rows += SCENARIOS[name](bench, builds, soak_minutes)
                else:
                    rows += SCENARIOS[name](bench, builds)
            except Exception as err:  # noqa: BLE001 - report it and go on with the others
                failed.append(name)
                detail = workdir / f"{name}-error.txt"
                detail.write_text(traceback.format_exc())
                say(f"scenario {name} FAILED: {short(err)} (full text in {detail})")
    finally:
        harness.close_clients()
        say("stopping Kafka")
        kafka.close()
    meta = {
        "builds": {lbl: str(p) for lbl, p in builds},
        "quick": args.quick,
        "memory_cap_mb": args.memory_cap_mb,
        "scenarios": args.scenarios,
        "failed": failed,
        "load_start": load_start,
        "load_end": procstats.machine_load(),
        "workdir": str(workdir),
    }
    print()
    print(report.table(rows))
    print()
    if failover := report.failover_table(rows):
        print(failover)
        print()
    print(report.summary(rows))
    print()
    paths = [report.save_json(rows, meta, OUT_DIR, stamp),
             report.plot_latency(rows, OUT_DIR / f"latency-{stamp}.png"),
             report.plot_throughput(rows, OUT_DIR / f"throughput-{stamp}.png")]
    for path in paths:
        if path is not None:
            say(f"wrote {path}")
    say(f"machine: start {load_start}; end {meta['load_end']}")
    if failed:
        say(f"failed scenarios: {', '.join(failed)} (tracebacks in {workdir})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
