"""What flows down the pipeline: one EPICS update, independent of the protocol it came from.

Sources (CA, PVA, fake) turn their library's callback data into these objects, so that the
serialisers and the stream logic never need to know which protocol a PV uses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class Severity(enum.IntEnum):
    """EPICS alarm severity (the numbers are the EPICS ones)."""

    NO_ALARM = 0
    MINOR = 1
    MAJOR = 2
    INVALID = 3


class ConnectionStatus(enum.Enum):
    """Connection states reported as ep01."""

    NEVER_CONNECTED = "NEVER_CONNECTED"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    DESTROYED = "DESTROYED"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class Alarm:
    """Alarm state of a PV.

    ``status`` is the EPICS alarm status name as f142 spells it ("NO_ALARM", "HIGH", "HIHI",
    "LOW", "LOLO", "STATE", "COS", "COMM", "TIMEOUT", "HWLIMIT", "CALC", "SCAN", "LINK",
    "SOFT", "BAD_SUB", "UDF", "DISABLE", "SIMM", "READ_ACCESS", "WRITE_ACCESS", "READ",
    "WRITE"); ``message`` is what al00 carries: the PVA alarm message, or for CA (which has
    no message) the status name, "NO_ALARM" included (as the ESS forwarder sends it).
    """

    severity: Severity = Severity.NO_ALARM
    status: str = "NO_ALARM"
    message: str = ""


NO_ALARM = Alarm()


@dataclass(frozen=True)
class Table:
    """An NTTable: ordered column name -> 1-D numpy array (all the same length)."""

    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return min((len(c) for c in self.columns.values()), default=0)


# The value of an update is one of:
#   * a numpy scalar (np.float64, np.float32, np.int64, np.int32, np.int16, np.int8,
#     np.uint8/16/32/64, np.bool_): scalars, 1-element arrays, and enum indices (as np.int16
#     over CA, np.int32 over PVA);
#   * a 1-D numpy array of one of those dtypes with len != 1 (len 0 means "empty update");
#   * str, or a tuple of str for string arrays;
#   * a Table for NTTables.
Value = "np.generic | np.ndarray | str | tuple[str, ...] | Table"


@dataclass(frozen=True)
class Update:
    """One value update of one PV, as received from EPICS."""

    channel: str
    value: object  # see Value above
    timestamp_ns: int  # EPICS timestamp, ns since the Unix epoch
    alarm: Alarm = NO_ALARM

    def is_empty(self) -> bool:
        """Empty arrays and tables are neither forwarded nor cached."""
        v = self.value
        if isinstance(v, np.ndarray):
            return v.size == 0
        if isinstance(v, (tuple, Table)):
            return len(v) == 0
        return False
