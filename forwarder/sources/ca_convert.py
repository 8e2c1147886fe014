"""Turns the arguments of a pyepics DBR_TIME monitor callback into an Update.

Kept apart from the libca plumbing so that it can be unit-tested without libca.
pyepics' DBR type numbers are the CA ones (db_access.h): STRING 0, SHORT 1, FLOAT 2,
ENUM 3, CHAR 4, LONG 5, DOUBLE 6; the TIME_ variants are these plus 14.
"""

from __future__ import annotations

import ctypes

import numpy as np

from forwarder.sources.alarm_names import ca_status_name
from forwarder.update import Alarm, Severity, Update

DBR_STRING, DBR_SHORT, DBR_FLOAT, DBR_ENUM, DBR_CHAR, DBR_LONG, DBR_DOUBLE = range(7)
TIME_OFFSET = 14
# Seconds from the Unix epoch to the EPICS epoch (1990-01-01 UTC).
EPICS_EPOCH_OFFSET_S = 631_152_000

# The numpy type of each native CA type. Enums are sent as their index: np.uint16, as CA's
# DBR_ENUM is an unsigned 16-bit integer (the ESS forwarder sends UShort too).
NUMPY_TYPES: dict[int, type[np.generic]] = {
    DBR_SHORT: np.int16,
    DBR_FLOAT: np.float32,
    DBR_ENUM: np.uint16,
    DBR_CHAR: np.uint8,
    DBR_LONG: np.int32,
    DBR_DOUBLE: np.float64,
}


def native_type(ftype: int) -> int:
    """The plain DBR type of a (TIME_) DBR type."""
    return ftype - TIME_OFFSET if ftype >= TIME_OFFSET else ftype


def severity_of(severity: int) -> Severity:
    try:
        return Severity(severity)
    except ValueError:
        return Severity.INVALID


# Alarm is frozen, so one object per (status, severity) serves every update; bounded, as a
# misbehaving server could send any 16-bit numbers.
_alarms: dict[tuple[int, int], Alarm] = {}
_ALARMS_CACHED = 1024


def alarm_of(status: int, severity: int) -> Alarm:
    """CA has no alarm message: the status name stands in for it, "NO_ALARM" included, as
    the ESS forwarder sends it."""
    alarm = _alarms.get((status, severity))
    if alarm is None:
        name = ca_status_name(status)
        alarm = Alarm(severity_of(severity), name, name)
        if len(_alarms) < _ALARMS_CACHED:
            _alarms[(status, severity)] = alarm
    return alarm


def timestamp_ns(posixseconds: int, nanoseconds: int) -> int:
    """Exact ns since the Unix epoch from pyepics' integer seconds and ns (no float)."""
    return int(posixseconds) * 1_000_000_000 + int(nanoseconds)


def convert_value(value: object, ftype: int) -> object:
    """The value as the pipeline wants it (see forwarder.update.Value).

    A 1-element array (char waveforms too) becomes a numpy scalar; longer char arrays stay
    np.uint8 arrays; strings are str and string arrays tuples of str.
    """
    ntype = native_type(ftype)
    if ntype == DBR_STRING:
        if isinstance(value, (list, tuple)):
            strings = tuple(str(s) for s in value)
            return strings[0] if len(strings) == 1 else strings
        return str(value)
    np_type = NUMPY_TYPES.get(ntype)
    if np_type is None:
        raise ValueError(f"unsupported CA field type {ftype}")
    # pyepics hands a 1-element char waveform over as a ctypes array, not a numpy one.
    if isinstance(value, (np.ndarray, list, tuple, ctypes.Array)):
        array = np.asarray(value).astype(np_type, copy=False).reshape(-1)
        return array[0] if array.size == 1 else array
    return np_type(value)


def update_from_ca(channel: str, value: object, kwargs: dict) -> Update:
    """Builds an Update from the keyword arguments pyepics passes to a monitor callback."""
    return Update(
        channel=channel,
        value=convert_value(value, kwargs["ftype"]),
        timestamp_ns=timestamp_ns(kwargs["posixseconds"], kwargs["nanoseconds"]),
        alarm=alarm_of(kwargs["status"], kwargs["severity"]),
    )
