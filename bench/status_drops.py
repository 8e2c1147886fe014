"""Drops a forwarder says it made, read from its x5f2 status.

A good forwarder that cannot deliver a value says so: per-stream integer counts in the
``streams`` entries of status_json. The field name is not settled, so ``dropped`` and
``updates_dropped`` are both read; a build whose status has neither reports no drops at
all, and the row says so rather than showing 0.
"""

from __future__ import annotations

from helpers.flatbuffers_helpers import X5f2

DROP_FIELDS = ("dropped", "updates_dropped")


def reported_drops(status: X5f2 | None) -> int | None:
    """Sum of the per-stream drop counts in one status; None if no stream carries one."""
    if status is None:
        return None
    total, found = 0, False
    for entry in status.streams():
        for key in DROP_FIELDS:
            value = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(value, int) and not isinstance(value, bool):
                total += value
                found = True
                break
    return total if found else None


def drops_between(before: X5f2 | None, after: X5f2 | None) -> int | None:
    """Drops reported between two statuses (counts are cumulative per stream)."""
    end = reported_drops(after)
    if end is None:
        return None
    return end - (reported_drops(before) or 0)
