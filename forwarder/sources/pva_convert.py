"""Turns a raw p4p Value (Context(nt=False)) of an NT structure into an Update.

Raw Values keep the PVA type codes, so the numpy type follows the NT scalar type exactly:
p4p gives numeric arrays as numpy arrays of the right dtype, scalars as Python numbers
that are cast here by the type code.
"""

from __future__ import annotations

import numpy as np

from forwarder.sources.alarm_names import KNOWN_STATUS_NAMES
from forwarder.update import Alarm, Severity, Table, Update

NUMPY_TYPES: dict[str, type[np.generic]] = {
    "?": np.bool_,
    "b": np.int8,
    "B": np.uint8,
    "h": np.int16,
    "H": np.uint16,
    "i": np.int32,
    "I": np.uint32,
    "l": np.int64,
    "L": np.uint64,
    "f": np.float32,
    "d": np.float64,
}

# PVA alarm.status codes (alarm_t: NONE, DEVICE, DRIVER, RECORD, DB, CONF, UNDEFINED,
# CLIENT) -> the closest CA status name, used only when alarm.message is not itself a CA
# status name (QSRV puts the CA status name into the message, so this is for other servers).
PVA_STATUS_FALLBACK_NAMES = {
    0: "NO_ALARM",
    1: "READ",  # DEVICE
    2: "COMM",  # DRIVER
    3: "STATE",  # RECORD
    4: "LINK",  # DB
    5: "SOFT",  # CONF
    6: "UDF",  # UNDEFINED
    7: "COMM",  # CLIENT
}


def alarm_of(severity: int, status: int, message: str) -> Alarm:
    """Status name: the message if it is a CA status name, else derived from alarm.status.

    A non-zero severity with status NONE and an unknown message gives "STATE" rather than
    "NO_ALARM", so that an alarm is never reported as none.
    """
    try:
        sev = Severity(severity)
    except ValueError:
        sev = Severity.INVALID
    if message in KNOWN_STATUS_NAMES:
        name = message
    else:
        name = PVA_STATUS_FALLBACK_NAMES.get(status, "UDF")
        if name == "NO_ALARM" and sev != Severity.NO_ALARM:
            name = "STATE"
    return Alarm(sev, name, message)


def _field(value, name: str, default):
    try:
        return value[name]
    except (KeyError, IndexError, TypeError):
        return default


def _scalar_or_array(raw, code: str) -> object:
    """One NTScalar/NTScalarArray value; 1-element arrays become scalars."""
    if code == "s":
        return str(raw)
    if code == "as":
        strings = tuple(str(s) for s in raw)
        return strings[0] if len(strings) == 1 else strings
    if code.startswith("a"):
        np_type = NUMPY_TYPES[code[1:]]
        array = np.asarray(raw).astype(np_type, copy=False).reshape(-1)
        return array[0] if array.size == 1 else array
    return NUMPY_TYPES[code](raw)


def _column(raw, code: str) -> np.ndarray:
    if code == "as":
        return np.asarray([str(s) for s in raw], dtype=np.str_)
    return np.asarray(raw).astype(NUMPY_TYPES[code[1:]], copy=False).reshape(-1)


def convert_value(value) -> object:
    """The ``value`` field of an NTScalar(Array), NTEnum or NTTable as the pipeline wants it."""
    code = value.type().aspy("value")
    if isinstance(code, str):
        if code.lstrip("a") not in NUMPY_TYPES and code.lstrip("a") != "s":
            raise ValueError(f"unsupported PVA value type {code!r}")
        return _scalar_or_array(value["value"], code)
    # A structure: ('S', id, [(field, code), ...])
    _, struct_id, fields = code
    if struct_id == "enum_t":
        return np.int32(value["value.index"])
    if value.getID().startswith("epics:nt/NTTable:"):
        inner = value["value"]
        return Table({name: _column(inner[name], fcode) for name, fcode in fields})
    raise ValueError(f"unsupported PVA structure {value.getID()!r} with value {struct_id!r}")


def update_from_pva(channel: str, value) -> Update:
    seconds = _field(value, "timeStamp.secondsPastEpoch", 0)
    nanos = _field(value, "timeStamp.nanoseconds", 0)
    return Update(
        channel=channel,
        value=convert_value(value),
        timestamp_ns=int(seconds) * 1_000_000_000 + int(nanos),
        alarm=alarm_of(
            int(_field(value, "alarm.severity", 0)),
            int(_field(value, "alarm.status", 0)),
            str(_field(value, "alarm.message", "")),
        ),
    )
