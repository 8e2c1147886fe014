"""ca_events.read_update on DBR_TIME buffers laid out as db_access.h defines them (pyepics'
ctypes structures), without libca: every numeric type, scalars, arrays and empty arrays."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from epics import dbr

from forwarder.sources import ca_events
from forwarder.sources.ca_convert import EPICS_EPOCH_OFFSET_S
from forwarder.update import Severity

# DBR_TIME type -> (pyepics structure, numpy type of the value)
LAYOUTS = {
    dbr.TIME_SHORT: (dbr.time_short, np.int16),
    dbr.TIME_FLOAT: (dbr.time_float, np.float32),
    dbr.TIME_ENUM: (dbr.time_enum, np.uint16),
    dbr.TIME_CHAR: (dbr.time_char, np.uint8),
    dbr.TIME_LONG: (dbr.time_long, np.int32),
    dbr.TIME_DOUBLE: (dbr.time_double, np.float64),
}


@pytest.fixture(autouse=True)
def offsets(monkeypatch):
    """The value offsets libca's dbr_value_offset table holds, from the same layouts."""
    monkeypatch.setattr(
        ca_events, "_value_offsets", {t: s.value.offset for t, (s, _) in LAYOUTS.items()}
    )


def buffer(ftype: int, values: list) -> ctypes.Array:
    struct, np_type = LAYOUTS[ftype]
    offset = struct.value.offset
    raw = (ctypes.c_char * (offset + max(1, len(values)) * np.dtype(np_type).itemsize))()
    head = struct.from_buffer(raw)
    head.status, head.severity = 3, 1  # HIHI, MINOR
    head.stamp.secs, head.stamp.nsec = 1_000_000_000, 123_456_789
    data = np.asarray(values, np_type).tobytes()
    ctypes.memmove(ctypes.addressof(raw) + offset, data, len(data))
    return raw


@pytest.mark.parametrize("ftype", sorted(LAYOUTS))
@pytest.mark.parametrize("values", [[7], [1, 2, 3], []])
def test_read_update_gives_the_native_numpy_type_time_and_alarm(ftype, values):
    np_type = LAYOUTS[ftype][1]
    raw = buffer(ftype, values)
    update = ca_events.read_update("PV", ftype, len(values), ctypes.addressof(raw))
    if len(values) == 1:
        assert type(update.value) is np_type and update.value == 7
    else:
        assert update.value.dtype == np_type and update.value.tolist() == values
    assert update.timestamp_ns == (1_000_000_000 + EPICS_EPOCH_OFFSET_S) * 10**9 + 123_456_789
    assert (update.alarm.severity, update.alarm.status) == (Severity.MINOR, "HIHI")


def test_an_array_is_a_copy_not_a_view_of_libcas_buffer():
    raw = buffer(dbr.TIME_DOUBLE, [1.0, 2.0])
    update = ca_events.read_update("PV", dbr.TIME_DOUBLE, 2, ctypes.addressof(raw))
    ctypes.memset(raw, 0, ctypes.sizeof(raw))  # libca reuses its buffer
    assert update.value.tolist() == [1.0, 2.0]
