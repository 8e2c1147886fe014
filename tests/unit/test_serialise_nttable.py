"""NTTables as se00 and senv: value and timestamp columns, counters, empty and bad tables."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from streaming_data_types import deserialise_se00, deserialise_senv

from forwarder.serialise import UnsupportedValue, make_data_serialiser
from forwarder.update import Table, Update

T0 = 1_700_000_000_123_456_000


def table(values, times=None) -> Table:
    values = np.asarray(values)
    if times is None:
        times = T0 + np.arange(len(values), dtype=np.int64) * 1000
    return Table({"value": values, "timestamp": np.asarray(times)})


def send(schema, value, serialiser=None):
    serialiser = serialiser or make_data_serialiser(schema, "SIM:TABLE")
    return serialiser.serialise(Update("SIM:TABLE", value, 5))


@pytest.mark.parametrize(
    "dtype",
    [
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float32",
        "float64",
    ],
)
def test_se00_values_and_times(dtype):
    values = np.array([1, 2, 3], dtype=dtype)
    got = deserialise_se00(send("nttable_se00", table(values)))
    assert got.name == "SIM:TABLE"
    assert got.values.dtype == np.dtype(dtype) and got.values.tolist() == values.tolist()
    assert got.value_ts.tolist() == [T0, T0 + 1000, T0 + 2000]
    assert got.timestamp_unix_ns == T0
    assert got.message_counter == 0


@pytest.mark.parametrize(
    "dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
)
def test_senv_values_and_times(dtype):
    values = np.array([7, 0, 9], dtype=dtype)
    got = deserialise_senv(send("nttable_senv", table(values)))
    assert got.name == "SIM:TABLE"
    assert got.values.dtype == np.dtype(dtype) and got.values.tolist() == values.tolist()
    assert got.value_ts.tolist() == [T0, T0 + 1000, T0 + 2000]
    expected = datetime.fromtimestamp(T0 / 1e9, tz=timezone.utc)
    assert abs((got.timestamp - expected).total_seconds()) < 1e-5


@pytest.mark.parametrize(
    "schema, reader", [("nttable_se00", deserialise_se00), ("nttable_senv", deserialise_senv)]
)
def test_message_counter_counts_per_stream_and_skips_empty_tables(schema, reader):
    serialiser = make_data_serialiser(schema, "SIM:TABLE")
    assert send(schema, table(np.array([], np.int32), np.array([], np.int64)), serialiser) is None
    counters = [reader(send(schema, table([i, i]), serialiser)).message_counter for i in range(3)]
    assert counters == [0, 1, 2]


def test_columns_of_different_length_are_cut_to_the_table_length():
    value = Table({"value": np.arange(5, dtype=np.int32), "timestamp": np.array([T0, T0 + 1])})
    got = deserialise_se00(send("nttable_se00", value))
    assert got.values.tolist() == [0, 1] and got.value_ts.tolist() == [T0, T0 + 1]


def test_bool_values_become_uint8():
    got = deserialise_se00(send("nttable_se00", table(np.array([True, False]))))
    assert got.values.dtype == np.uint8 and got.values.tolist() == [1, 0]


@pytest.mark.parametrize("schema", ["nttable_se00", "nttable_senv"])
@pytest.mark.parametrize(
    "value, message",
    [
        (np.arange(3), "needs an NTTable"),
        ("text", "needs an NTTable"),
        (Table({"value": np.arange(2)}), "missing \\['timestamp'\\]"),
        (Table({"timestamp": np.arange(2)}), "missing \\['value'\\]"),
        (table(np.array(["a", "b"])), "dtype"),
        (table([1, 2], [-1, 5]), "uint64"),
    ],
)
def test_bad_tables_raise_unsupported_value(schema, value, message):
    with pytest.raises(UnsupportedValue, match=message):
        send(schema, value)


def test_senv_cannot_carry_floats():
    with pytest.raises(UnsupportedValue, match="float64"):
        send("nttable_senv", table([1.5, 2.5]))
