"""tdct timestamp lists (e.g. chopper top-dead-centre times).

The PV's value holds offsets in ns from the update's EPICS timestamp (an integer or float
array, or a scalar); the message carries the absolute times update.timestamp_ns + offset as
uint64. An empty array sends nothing. Each stream numbers its messages 0, 1, 2, ... in the
schema's sequence_counter.
"""

from __future__ import annotations

import numpy as np
from streaming_data_types import serialise_tdct

from forwarder.serialise.base import UnsupportedValue
from forwarder.serialise.errors import value_errors_as_unsupported
from forwarder.update import Table, Update

_UINT64_MAX = np.iinfo(np.uint64).max


def absolute_times(value: object, timestamp_ns: int, schema: str = "tdct") -> np.ndarray:
    """timestamp_ns + each ns offset in ``value``, as uint64; UnsupportedValue if impossible."""
    if isinstance(value, (str, tuple, Table)):
        raise UnsupportedValue(f"{schema} needs numeric ns offsets, not {type(value).__name__}")
    offsets = np.atleast_1d(np.asarray(value))
    if offsets.ndim != 1:
        raise UnsupportedValue(f"{schema} needs a scalar or 1-D array of ns offsets")
    kind = offsets.dtype.kind
    if kind == "f":
        if not np.all(np.isfinite(offsets)):
            raise UnsupportedValue(f"{schema} offsets must be finite numbers")
        offsets = np.rint(offsets)
    elif kind not in "iub":
        raise UnsupportedValue(f"{schema} cannot use offsets of dtype {offsets.dtype}")
    # Python ints are exact at any size; arrays of offsets are short (one per event).
    times = [timestamp_ns + int(offset) for offset in offsets.tolist()]
    if times and (min(times) < 0 or max(times) > _UINT64_MAX):
        raise UnsupportedValue(f"{schema} times must fit in uint64 ns")
    return np.array(times, dtype=np.uint64)


class TdctSerialiser:
    """One stream's updates as tdct, with the stream's own sequence counter."""

    def __init__(self, channel: str) -> None:
        self._channel = channel
        self._sequence = 0

    def serialise(self, update: Update) -> bytes | None:
        times = absolute_times(update.value, update.timestamp_ns)
        if times.size == 0:
            return None
        with value_errors_as_unsupported("tdct"):
            payload = serialise_tdct(self._channel, times, self._sequence)
        self._sequence += 1
        return payload
