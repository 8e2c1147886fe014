"""EPICS alarm status names, indexed by the CA status number (the order of EPICS alarm.h)."""

from __future__ import annotations

CA_ALARM_STATUS_NAMES: tuple[str, ...] = (
    "NO_ALARM",
    "READ",
    "WRITE",
    "HIHI",
    "HIGH",
    "LOLO",
    "LOW",
    "STATE",
    "COS",
    "COMM",
    "TIMEOUT",
    "HWLIMIT",
    "CALC",
    "SCAN",
    "LINK",
    "SOFT",
    "BAD_SUB",
    "UDF",
    "DISABLE",
    "SIMM",
    "READ_ACCESS",
    "WRITE_ACCESS",
)

KNOWN_STATUS_NAMES = frozenset(CA_ALARM_STATUS_NAMES)


def ca_status_name(status: int) -> str:
    """The name of a CA alarm status number; out-of-range numbers give "UDF" (unknown)."""
    if 0 <= status < len(CA_ALARM_STATUS_NAMES):
        return CA_ALARM_STATUS_NAMES[status]
    return "UDF"
