"""Which counter values arrived and which did not, over a window the generator was read in.

The consumer keeps, per PV, the set of counter values it received as sorted runs
(``ReceivedValues``); the IOC's counters are read at the window's start and end
(``bench.counter_snapshot``). A PV's counter made the values (start, end] in the window, so
every one of them that never arrived is either *lost* (a later value did arrive, so it was
skipped) or *backlog* (no later value arrived by the end of the drain: still queued in the
forwarder or the broker client, or lost at the tail; either way not delivered).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass


class ReceivedValues:
    """A set of integers kept as sorted, disjoint [lo, hi] runs; counters mostly extend the
    last run, so it stays small unless values are lost."""

    __slots__ = ("runs",)

    def __init__(self, runs: list[list[int]] | None = None):
        self.runs: list[list[int]] = runs or []

    def add(self, value: int) -> bool:
        """Add ``value``; False if it was there already (a repeat)."""
        runs = self.runs
        if runs and runs[-1][1] + 1 == value:  # the common case: the next count
            runs[-1][1] = value
            return True
        if not runs or value > runs[-1][1] + 1:
            runs.append([value, value])
            return True
        i = bisect_right(runs, [value, float("inf")]) - 1  # the run starting at or before value
        if i >= 0 and runs[i][0] <= value <= runs[i][1]:
            return False
        joins_left = i >= 0 and runs[i][1] + 1 == value
        joins_right = i + 1 < len(runs) and runs[i + 1][0] - 1 == value
        if joins_left and joins_right:
            runs[i][1] = runs[i + 1][1]
            del runs[i + 1]
        elif joins_left:
            runs[i][1] = value
        elif joins_right:
            runs[i + 1][0] = value
        else:
            runs.insert(i + 1, [value, value])
        return True

    def count_in(self, lo: int, hi: int) -> int:
        """How many received values lie in [lo, hi]."""
        return sum(max(0, min(b, hi) - max(a, lo) + 1) for a, b in self.runs)

    @property
    def highest(self) -> int | None:
        return self.runs[-1][1] if self.runs else None


@dataclass
class Delivery:
    """Values the generator made in a window, and what became of them."""

    made: int = 0  # counter steps between the two readings, over all PVs
    delivered: int = 0
    lost: int = 0  # not received, though a later value was
    backlog: int = 0  # not received and nothing later either, by the end of the drain
    pvs: int = 0
    pvs_read: int = 0  # PVs the generator could be read for at both ends

    @property
    def undelivered(self) -> int:
        return self.lost + self.backlog


def account(start: dict[str, float], end: dict[str, float],
            received: dict[str, list[list[int]]], names) -> Delivery:
    """Count, per PV, the values (start, end] the generator made and which of them arrived."""
    out = Delivery()
    for name in names:
        out.pvs += 1
        if name not in start or name not in end:
            continue
        out.pvs_read += 1
        lo, hi = int(round(start[name])) + 1, int(round(end[name]))
        if hi < lo:
            continue
        made = hi - lo + 1
        got = ReceivedValues(received.get(name))
        delivered = got.count_in(lo, hi)
        top = got.highest
        # Values above the last one received never showed a successor: backlog.
        backlog = made if top is None else max(0, hi - max(top, lo - 1))
        out.made += made
        out.delivered += delivered
        out.backlog += backlog
        out.lost += made - delivered - backlog
    return out
