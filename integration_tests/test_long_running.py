"""Soak test (marker long_running, off by default; run with -m long_running).

For FORWARDER_SOAK_SECONDS (default 4 h) the forwarder forwards CA, PVA and FAKE streams
while the test changes the PVs about ten times a second. Every FORWARDER_SOAK_SAMPLE_SECONDS
(default 30) it writes the forwarder's RSS to logs/<run>/soak-rss.csv and checks that the
latest change arrived. At the end nothing may be missing, and the RSS of the last quarter may
not exceed that of the first quarter by more than FORWARDER_SOAK_RSS_GROWTH_MB (default 50).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest

from helpers.rig.paths import LOG_DIR, run_id
from integration_tests.forwarder_fixtures import Stream, epics_write

pytestmark = pytest.mark.extension


DURATION_S = float(os.environ.get("FORWARDER_SOAK_SECONDS", 4 * 3600))
SAMPLE_S = float(os.environ.get("FORWARDER_SOAK_SAMPLE_SECONDS", 30))
RSS_GROWTH_MB = float(os.environ.get("FORWARDER_SOAK_RSS_GROWTH_MB", 50))
PUT_INTERVAL_S = 0.1


def _rss_bytes(pid: int | None) -> int | None:
    """RSS of the forwarder's process group leader and its children (None if not local)."""
    import psutil

    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        return proc.memory_info().rss + sum(
            c.memory_info().rss for c in proc.children(recursive=True)
        )
    except psutil.Error:
        return None


@pytest.mark.long_running
def test_forwarder_runs_for_hours_without_losing_updates_or_growing(
    ioc, epics_network, pv_prefix, forwarder, control, outputs, topics
):
    topic = topics.new("soak")
    reader = outputs(topic)
    ca, pva, fake = ioc.pv("DOUBLE"), ioc.pv("LONG"), f"{pv_prefix}FAKE"
    streams = [
        Stream(ca, "f144", topic, "CA"),
        Stream(pva, "f144", topic, "PVA"),
        Stream(fake, "f144", topic, "FAKE"),
        Stream(ioc.pv("DOUBLE_ARRAY"), "f142", topic, "PVA", periodic=True),
    ]
    control.add_and_wait(streams, timeout=30)
    reader.wait_for_count(1, schema="f144", source=ca, timeout=30)

    csv_path = LOG_DIR / run_id() / "soak-rss.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    samples: list[tuple[float, int]] = []
    received = {ca: 0, pva: 0}
    put_count = 0

    def drain() -> None:
        reader.poll(timeout_ms=0)
        for record in reader.records:
            source = getattr(record.message, "source", None)
            if getattr(record.message, "schema", "") == "f144" and source in received:
                received[source] += 1
        reader.records.clear()

    with open(csv_path, "w") as csv:
        csv.write("elapsed_s,rss_bytes,puts,received_ca,received_pva\n")
        start = time.monotonic()
        next_sample = start
        while time.monotonic() - start < DURATION_S:
            put_count += 1
            epics_write(ca, float(put_count))
            epics_write(pva, put_count % 2_000_000_000)
            drain()
            now = time.monotonic()
            if now >= next_sample:
                rss = _rss_bytes(forwarder.pid)
                if rss is not None:
                    samples.append((now - start, rss))
                csv.write(f"{now - start:.1f},{rss},{put_count},{received[ca]},{received[pva]}\n")
                csv.flush()
                assert forwarder.is_running(), forwarder.log_tail(30)
                next_sample = now + SAMPLE_S
            time.sleep(PUT_INTERVAL_S)  # the soak's load pacing, not a synchronisation

    expected = put_count + 1  # plus the initial value
    reader.wait_for(
        lambda: (drain(), received[ca] >= expected and received[pva] >= expected)[1],
        timeout=60,
        what=f"all {expected} updates of each of {ca} and {pva}",
    )
    assert received == {ca: expected, pva: expected}, f"received {received}, put {put_count}"
    if len(samples) >= 8:
        quarter = len(samples) // 4
        first = statistics.median(r for _, r in samples[:quarter])
        last = statistics.median(r for _, r in samples[-quarter:])
        growth_mb = (last - first) / 1e6
        assert growth_mb <= RSS_GROWTH_MB, (
            f"RSS grew by {growth_mb:.1f} MB (first quarter {first / 1e6:.1f} MB, last "
            f"{last / 1e6:.1f} MB); samples in {csv_path}"
        )
