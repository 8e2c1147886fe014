"""The outage scenario: CA counters through a forwarder while the broker is down for a while.

A good forwarder either delivers a value once the broker is back or counts it as dropped
in its x5f2 status; nothing may vanish silently. Per build: the updates the IOC made (read
from its counters before and after), how many arrived, how many the forwarder reported
dropped, and the rest, lost without a word (must be 0), with its peak RSS while it buffered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import procstats
from bench.counter_snapshot import CaCounters
from bench.harness import (
    Bench,
    Row,
    RunningForwarder,
    add_delivery,
    close_clients,
    consumer_files,
    consumer_row,
    create_data_topic,
    read_counters,
    read_result,
    short,
    start_consumer,
    wait_drained,
    wait_flowing,
    watch_rss,
    write_control,
)
from bench.memory_guard import RssGuard
from bench.status_drops import drops_between
from helpers import kafka_helpers
from helpers.forwarder_control import Stream, now_ms

BEFORE_S = 5.0  # flowing normally before the broker stops
AFTER_S = 10.0  # flowing again after it is back, before the second reading
STATUS_WAIT_S = 15.0  # for a status sent after the drain (the forwarder sends one every 4 s)


def outage_seconds(bench: Bench) -> float:
    return bench.outage_s if bench.outage_s is not None else (20.0 if bench.quick else 60.0)


def measure_outage(bench: Bench, builds: Sequence[tuple[str, Path]], names: Sequence[str],
                   nominal: float, say_row: Callable[[Row], None]) -> list[Row]:
    """One row per build; the load IOC serving ``names`` is already up."""
    rows = []
    for label, build in builds:
        rows.append(_one_build(bench, build, label, names, nominal))
        say_row(rows[-1])
    return rows


def _one_build(bench: Bench, build: Path, label: str, names: Sequence[str],
               nominal: float) -> Row:
    kafka = bench.kafka
    down_s = outage_seconds(bench)
    drain_s = max(60.0, 2 * down_s)  # until the broker is back; then from the real outage
    what = f"outage [{label}]"
    topic = kafka_helpers.unique_topic("bench-data")
    create_data_topic(bench.bootstrap, topic)
    streams = [Stream(n, "f144", topic, "CA") for n in names]
    reader = CaCounters(bench.network, names)
    files = consumer_files(bench.path(f"outage-{label}"))
    consumer = start_consumer(bench, topic, "counter", len(names), files)
    rss: list[tuple[float, int]] = []
    try:
        with RunningForwarder(bench, build) as fwd:
            guard = RssGuard(fwd.pid, bench.memory_cap_mb, bench.say, what)
            bench.say(f"{what}: forwarder pid {fwd.pid} up; adding {len(streams)} streams")
            fwd.control.add(streams)
            wait_flowing(bench, consumer, files, len(streams), guard, what)
            status_before = fwd.control.latest_status()
            t0 = time.time()
            write_control(files["control"], t0=t0, t1=None, drain=drain_s, caught_up=None)
            start = read_counters(reader, what, bench.say)
            cpu0 = procstats.cpu_seconds(fwd.pid)
            rss.append((time.time(), guard.check()))
            watch_rss(guard, t0 + BEFORE_S, rss)
            bench.say(f"{what}: stopping the broker for {down_s:.0f} s")
            # Clients of ours that would log every failed reconnect while it is down: the
            # cached admin client, and the status reader (reopened on the next status read).
            close_clients()
            fwd.control.close()
            down_at = time.time()
            kafka.stop()
            try:
                watch_rss(guard, time.time() + down_s, rss)
            finally:
                kafka.start()
            up_at = time.time()
            bench.say(f"{what}: broker back after {up_at - down_at:.1f} s (its restart took "
                      f"{kafka.last_start_seconds:.1f} s); RSS peak so far "
                      f"{guard.peak / 1e6:.0f} MB")
            # The whole outage's backlog has to go out, and a restart under load is slow.
            drain_s = max(60.0, 2 * (up_at - down_at))
            watch_rss(guard, up_at + AFTER_S, rss)
            t1 = time.time()
            end = read_counters(reader, what, bench.say)
            cpu1 = procstats.cpu_seconds(fwd.pid) if not guard.stopped else None
            write_control(files["control"], t0=t0, t1=t1, drain=drain_s,
                          caught_up=end.ended if end else t1)
            alive = fwd.process.is_running()
            bench.say(f"{what}: draining (at most {drain_s:.0f} s)")
            wait_drained(consumer, drain_s + 30, guard)
            status_after = None
            if fwd.process.is_running():
                try:
                    status_after = fwd.control.wait_for_status(
                        timeout=STATUS_WAIT_S, what="a status after the drain",
                        since_ms=now_ms()).status
                except AssertionError as err:
                    bench.say(f"{what}: {short(err)}")
    finally:
        consumer.stop()
        reader.close()
        if not kafka.is_running():  # never leave the shared broker down
            kafka.start()
    result = read_result(files, consumer)
    row = consumer_row(label, "outage", nominal, "counter", result,
               None if cpu1 is None else cpu1 - cpu0, rss, alive)
    add_delivery(row, start, end, files["received"], names)
    outage_rss = [r for t, r in rss if down_at <= t <= up_at + AFTER_S]
    peak_mb = max(outage_rss, default=0) / 1e6
    _outage_fields(row, guard, status_before, status_after, peak_mb, up_at - down_at)
    return row


def _outage_fields(row: Row, guard: RssGuard, status_before, status_after, peak_mb: float,
                   down_s: float) -> None:
    """The outage's own figures: delivered, reported dropped, lost without a report."""
    got = row.extra.get("delivery")
    reported = drops_between(status_before, status_after)
    out = {"broker_down_s": down_s, "rss_peak_outage_mb": peak_mb,
           "reported_dropped": reported, "drop_counts_in_status": reported is not None}
    parts = [f"broker down {down_s:.0f} s", f"peak RSS {peak_mb:.0f} MB"]
    if got is not None:
        unreported = got["made"] - got["delivered"] - (reported or 0)
        out.update(made=got["made"], delivered=got["delivered"], lost_unreported=unreported,
                   backlog=got["backlog"])
        parts.insert(0, f"made {got['made']}, delivered {got['delivered']}, reported dropped "
                        f"{'-' if reported is None else reported}, lost unreported "
                        f"{unreported} (backlog at the drain's end {got['backlog']})")
        row.zero_loss = unreported == 0 and not guard.stopped
    else:
        parts.insert(0, "counters unread: made/lost unknown")
        row.zero_loss = False
    if reported is None:
        parts.append("no drop counts in status (counted as 0)")
    if guard.stopped:
        parts.insert(0, guard.note())
    row.note = "; ".join(parts + ([row.note] if row.note else []))
    row.extra["outage"] = out
