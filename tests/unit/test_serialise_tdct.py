"""tdct: ns offsets in the value become absolute uint64 times; one counter per stream."""

from __future__ import annotations

import numpy as np
import pytest
from streaming_data_types import deserialise_tdct

from forwarder.serialise import UnsupportedValue, make_data_serialiser
from forwarder.update import Table, Update

T0 = 1_700_000_000_000_000_000


def send(serialiser, value, timestamp=T0):
    return serialiser.serialise(Update("SIM:TDC", value, timestamp))


@pytest.mark.parametrize(
    "offsets, expected",
    [
        (np.array([0, 10, 2_000_000], np.int64), [T0, T0 + 10, T0 + 2_000_000]),
        (np.array([5, 6], np.uint32), [T0 + 5, T0 + 6]),
        (np.array([-5, 1.4, 2.6]), [T0 - 5, T0 + 1, T0 + 3]),
        (np.int32(42), [T0 + 42]),
        (np.float64(0.0), [T0]),
    ],
)
def test_offsets_become_absolute_times(offsets, expected):
    got = deserialise_tdct(send(make_data_serialiser("tdct", "SIM:TDC"), offsets))
    assert got.name == "SIM:TDC"
    assert got.timestamps.dtype == np.uint64
    assert got.timestamps.tolist() == expected


def test_empty_array_sends_nothing_and_does_not_count():
    serialiser = make_data_serialiser("tdct", "SIM:TDC")
    assert send(serialiser, np.array([], np.int64)) is None
    assert deserialise_tdct(send(serialiser, np.int64(1))).sequence_counter == 0


def test_sequence_counter_counts_per_stream():
    first, second = make_data_serialiser("tdct", "A"), make_data_serialiser("tdct", "B")
    counters = [deserialise_tdct(send(first, np.int64(i))).sequence_counter for i in range(4)]
    assert counters == [0, 1, 2, 3]
    assert deserialise_tdct(send(second, np.int64(0))).sequence_counter == 0


def test_times_near_uint64_limits_are_exact():
    top = 2**64 - 1
    got = deserialise_tdct(send(make_data_serialiser("tdct", "c"), np.array([0, -1]), top))
    assert got.timestamps.tolist() == [top, top - 1]


@pytest.mark.parametrize(
    "value, timestamp, message",
    [
        ("text", T0, "numeric"),
        (("a",), T0, "numeric"),
        (Table({"value": np.arange(2)}), T0, "numeric"),
        (np.array([-1]), 0, "uint64"),
        (np.array([1]), 2**64 - 1, "uint64"),
        (np.array([np.nan]), T0, "finite"),
        (np.zeros((2, 2)), T0, "1-D"),
        (np.array([1j]), T0, "complex"),
    ],
)
def test_bad_offsets_raise_unsupported_value(value, timestamp, message):
    with pytest.raises(UnsupportedValue, match=message):
        send(make_data_serialiser("tdct", "c"), value, timestamp)
