"""Where a forwarder's Python time goes during a window: py-spy samples of its Python
threads, each given to the pipeline stage it was in (the innermost frame that names one).

Samples only, not CPU: a thread blocked in a C call (librdkafka's poll, a consumer's poll)
still shows its Python frame, so those samples are left out as waits; a sample of a native
thread with no Python frame on it (libca between callbacks) is counted as such. The row's
per-thread CPU split from /proc says how much CPU each thread really used.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

# (stage, substrings of a frame): the first stage any frame of a sample matches, innermost
# frame first, takes the sample.
STAGES: Sequence[tuple[str, Sequence[str]]] = (
    ("serialisers", ("forwarder/serialise/",)),
    ("producer (ours)", ("forwarder/kafka/",)),
    ("stream logic", ("forwarder/stream.py", "forwarder/periodic.py", "forwarder/update.py")),
    ("EPICS source (ours)", ("forwarder/sources/",)),
    ("confluent-kafka / librdkafka", ("confluent_kafka", "cimpl", "rd_kafka", "librdkafka")),
    ("pyepics", ("epics/",)),
    ("p4p (pop: a PVXS update made into a Value)", ("p4p/",)),
    ("ctypes", ("_ctypes", "ffi_", "libffi")),
    ("libca", ("libca.", "libCom", "cac::", "tcpiiu", "udpiiu", "ca_client")),
    ("pvxs", ("pvxs", "libevent", "event_base")),
    ("forwarder, other", ("forwarder/",)),
)
OTHER = "other (interpreter, threads, logging)"
NATIVE = "native, no Python frame (libca, PVXS)"
# Innermost frames that are a C call able to block: a sample there may be a wait.
WAITS = ("_poll_loop (forwarder/kafka/producer.py", "poll (forwarder/kafka/consumer.py",
         "wait (threading.py", "select (", "sleep (")


def py_spy() -> str:
    """The py-spy of this interpreter's environment (requirements-dev.txt pins it)."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy (pip install -r requirements-dev.txt)")
    return found


def start(pid: int, seconds: float, out: Path, rate: int = 250) -> subprocess.Popen:
    """py-spy recording ``pid``'s Python threads for ``seconds`` into ``out`` (collapsed
    stacks), without pausing it. Native stacks would need a pause per sample, which starved
    the PVA forwarder (3,254 of 10,000 updates/s) and counted librdkafka's idle waits as
    work; the per-thread CPU split in the row's note covers the native threads."""
    return subprocess.Popen(
        [py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
         "--rate", str(rate), "--threads", "--nonblocking", "--format", "raw",
         "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def stage_of(frames: Sequence[str]) -> str | None:
    """The sample's stage; None for a wait."""
    if len(frames) == 1 and frames[0].startswith("thread ("):
        return NATIVE
    if frames[-1].startswith(WAITS):
        return None
    for frame in reversed(frames):
        for stage, marks in STAGES:
            if any(mark in frame for mark in marks):
                return stage
    return OTHER


def split(lines: Iterable[str]) -> dict[str, float]:
    """Percent of the non-wait samples per stage, largest first, from py-spy's raw
    (collapsed) lines."""
    counts: collections.Counter[str] = collections.Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stage = stage_of(stack.split(";"))
        if stage is not None:
            counts[stage] += int(count)
    total = sum(counts.values())
    if not total:
        return {}
    return {stage: round(100.0 * n / total, 1) for stage, n in counts.most_common()}


def finish(proc: subprocess.Popen, out: Path, timeout: float) -> dict[str, float]:
    """Wait for the recording; its split (empty if py-spy failed)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if not out.exists():
        return {}
    with out.open() as f:
        return split(f)


def describe(shares: dict[str, float], top: int = 6) -> str:
    return ", ".join(f"{stage} {pct:.0f}%" for stage, pct in list(shares.items())[:top])
