"""10,000 CA PVs under load, the IOC restarted twice: does every PV resume, and how soon?

The load IOC's counters scan at 1 Hz (10k updates/s, what one forwarder sustains here). The
IOC is stopped and started again on the same ports; a PV has resumed once the forwarder's
status reports it CONNECTED with an update sent after the restart (``last_update_ms``, the
EPICS time of that update). Per build: the time until all resumed, after each restart, and
RSS before and after.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from bench import procstats
from bench.harness import Bench, Row, RunningForwarder, create_data_topic, updated_since
from bench.load_ioc import LoadIoc, counter_names
from helpers import kafka_helpers
from helpers.forwarder_control import ForwarderControl, Stream, now_ms
from helpers.polling import wait_until

COUNT = 10_000
RATE_HZ = 1
RESTARTS = 2
RESUME_TIMEOUT_S = 300.0


def _resumed(control: ForwarderControl, since_ms: int) -> int:
    record = control.latest_status()
    return 0 if record is None else updated_since(record.streams(), since_ms)


def _wait_resumed(control: ForwarderControl, count: int, since_ms: int, what: str) -> float:
    started = time.monotonic()
    wait_until(
        lambda: _resumed(control, since_ms) >= count,
        timeout=RESUME_TIMEOUT_S,
        what=what,
        seen=lambda: f"{_resumed(control, since_ms)} of {count} resumed",
        interval=0.5,
    )
    return time.monotonic() - started


def ioc_restarts(bench: Bench, builds: Sequence[tuple[str, Path]], prefix: str) -> list[Row]:
    rows = []
    names = counter_names(prefix, COUNT)
    ioc = LoadIoc(
        prefix, bench.network, bench.path("ioc-restarts.db"), count=COUNT, rate_hz=RATE_HZ
    )
    bench.say(f"ioc-restarts: load IOC with {COUNT} counters at {RATE_HZ} Hz; starting")
    ioc.start()
    try:
        for label, build in builds:
            topic = kafka_helpers.unique_topic("bench-data")
            create_data_topic(bench.bootstrap, topic)
            streams = [Stream(n, "f144", topic, "CA") for n in names]
            what = f"ioc-restarts [{label}]"
            with RunningForwarder(bench, build) as fwd:
                fwd.control.add(streams)
                first = _wait_resumed(fwd.control, COUNT, 0, f"{what}: all {COUNT} PVs forwarding")
                rss0 = procstats.rss_bytes(fwd.pid)
                bench.say(
                    f"{what}: all {COUNT} forwarding after {first:.1f} s; RSS {rss0 / 1e6:.0f} MB"
                )
                took = []
                for i in range(RESTARTS):
                    ioc.stop()
                    restarted_ms = now_ms()
                    ioc.start()
                    took.append(
                        _wait_resumed(
                            fwd.control,
                            COUNT,
                            restarted_ms,
                            f"{what}: every PV resumed after IOC restart {i + 1}",
                        )
                    )
                    bench.say(
                        f"{what}: restart {i + 1}: all {COUNT} resumed after {took[-1]:.1f} s"
                    )
                rss1 = procstats.rss_bytes(fwd.pid)
                alive = fwd.process.is_running()
            rows.append(
                Row(
                    build=label,
                    scenario="ioc-restarts",
                    kind="forwarder",
                    offered=COUNT * RATE_HZ,
                    rate=None,
                    rss_start_mb=rss0 / 1e6,
                    rss_steady_mb=rss1 / 1e6,
                    note=(
                        f"{COUNT} PVs; every PV resumed after each of {RESTARTS} IOC restarts, "
                        f"in {', '.join(f'{t:.1f}' for t in took)} s (status CONNECTED with a "
                        f"new update); RSS {rss0 / 1e6:.0f} -> {rss1 / 1e6:.0f} MB"
                        f"{'' if alive else '; forwarder died'}"
                    ),
                    extra={"resume_s": took, "first_s": first},
                )
            )
    finally:
        ioc.stop()
    return rows
