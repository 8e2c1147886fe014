"""CPU time and memory of a process and its children (a launcher may fork the forwarder)."""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its live children."""
    total = 0.0
    for proc in _tree(pid):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its live children."""
    total = 0
    for proc in _tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def machine_load() -> str:
    """Load averages and core count, for the report: figures on a busy machine are noisy."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}/{fifteen:.2f} on {psutil.cpu_count()} cores"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (``comm``, digits dropped) over the process tree, to show
    where the time goes: librdkafka names its threads ``rdk:*``, libca and pvxs theirs."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for proc in _tree(pid):
        for task in Path(f"/proc/{proc.pid}/task").glob("*"):
            try:
                comm = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            name = comm.rstrip("0123456789-_ ") or comm
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def cpu_split(before: dict[str, float], after: dict[str, float], top: int = 4) -> str:
    """The ``top`` thread groups by CPU used between two ``thread_cpu`` samples."""
    used = {k: after[k] - before.get(k, 0.0) for k in after}
    total = sum(used.values()) or 1.0
    ranked = sorted(used.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{k} {v / total * 100:.0f}%" for k, v in ranked if v > 0)
