"""NTTables with ``value`` and ``timestamp`` (ns) columns as se00 or senv sample arrays.

One update = one message holding all rows: values from the ``value`` column, per-sample
times from the ``timestamp`` column, packet timestamp = the first sample's time. Each stream
counts its messages 0, 1, 2, ... in message_counter. An empty table sends nothing; a table
without those two columns, or with values the schema cannot hold, raises UnsupportedValue.
senv cannot carry floats (it has integer members only) and its library writer takes the
packet time as a datetime, so senv packet times are rounded to the microsecond.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from streaming_data_types import serialise_se00, serialise_senv
from streaming_data_types.fbschemas.array_1d_se00.Location import Location as Se00Location
from streaming_data_types.fbschemas.sample_environment_senv.Location import (
    Location as SenvLocation,
)

from forwarder.serialise.base import UnsupportedValue
from forwarder.serialise.errors import value_errors_as_unsupported
from forwarder.serialise.tdct import absolute_times
from forwarder.update import Table, Update

VALUE_COLUMN = "value"
TIMESTAMP_COLUMN = "timestamp"

_INTEGER_DTYPES = frozenset(
    np.dtype(n) for n in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
)
SE00_DTYPES = _INTEGER_DTYPES | {np.dtype("float32"), np.dtype("float64")}
SENV_DTYPES = _INTEGER_DTYPES


def table_columns(value: object, schema: str, dtypes: frozenset) -> tuple[np.ndarray, np.ndarray]:
    """(values, uint64 ns timestamps) of an NTTable update, cut to the table's length."""
    if not isinstance(value, Table):
        raise UnsupportedValue(f"{schema} needs an NTTable, not {type(value).__name__}")
    missing = [c for c in (VALUE_COLUMN, TIMESTAMP_COLUMN) if c not in value.columns]
    if missing:
        raise UnsupportedValue(
            f"{schema} needs table columns 'value' and 'timestamp'; missing {missing}"
        )
    rows = len(value)
    values = np.asarray(value.columns[VALUE_COLUMN])[:rows]
    if values.dtype.kind == "b":
        values = values.astype(np.uint8)
    elif not values.dtype.isnative:
        values = values.astype(values.dtype.newbyteorder("="))
    if values.dtype not in dtypes:
        raise UnsupportedValue(f"{schema} cannot carry table values of dtype {values.dtype}")
    times = absolute_times(np.asarray(value.columns[TIMESTAMP_COLUMN])[:rows], 0, schema)
    return values, times


class Se00Serialiser:
    """Schema "nttable_se00": one se00 message per table update."""

    def __init__(self, channel: str) -> None:
        self._channel = channel
        self._counter = 0

    def serialise(self, update: Update) -> bytes | None:
        values, times = table_columns(update.value, "nttable_se00", SE00_DTYPES)
        if values.size == 0:
            return None
        with value_errors_as_unsupported("nttable_se00"):
            payload = serialise_se00(
                name=self._channel,
                channel=0,
                timestamp_unix_ns=int(times[0]),
                sample_ts_delta=0,
                message_counter=self._counter,
                values=values,
                ts_location=Se00Location.Start,
                value_timestamps=times,
            )
        self._counter += 1
        return payload


class SenvSerialiser:
    """Schema "nttable_senv": one senv message per table update (integer values only)."""

    def __init__(self, channel: str) -> None:
        self._channel = channel
        self._counter = 0

    def serialise(self, update: Update) -> bytes | None:
        values, times = table_columns(update.value, "nttable_senv", SENV_DTYPES)
        if values.size == 0:
            return None
        packet_time = datetime.fromtimestamp(int(times[0]) / 1e9, tz=timezone.utc)
        with value_errors_as_unsupported("nttable_senv"):
            payload = serialise_senv(
                name=self._channel,
                channel=0,
                timestamp=packet_time,
                sample_ts_delta=0,
                message_counter=self._counter,
                values=values,
                ts_location=SenvLocation.Start,
                value_timestamps=times,
            )
        self._counter += 1
        return payload
