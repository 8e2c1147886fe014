"""f144: our fast writer must read back exactly like the library's own serialise_f144 output.

The library's deserialise_f144 is the judge: for generated values of every dtype, scalar and
array, and many channel names and timestamps, it must read the same source name, value,
dtype and timestamp from our bytes as from the library's. A structural check (offsets in
bounds, fields aligned, strings NUL-terminated) stands in for the C++ flatbuffers verifier.
"""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
from streaming_data_types import deserialise_f144, serialise_f144

from forwarder.serialise import UnsupportedValue, make_data_serialiser
from forwarder.serialise.f144 import F144FastSerialiser
from forwarder.serialise.value_union import F144_MEMBERS as MEMBERS
from forwarder.update import Table, Update
from tests.unit import fb_structure as fb
from tests.unit.reference_serialisers import F144Serialiser

DTYPES = sorted(MEMBERS, key=str)
RNG = np.random.default_rng(20261124)

CHANNELS = [
    "",
    "a",
    "ab",
    "abc",
    "abcd",
    "abcde",
    "SIM:TEMP:01.VAL",
    "Température:°C",
    "检测器:计数",
    "emoji:🧪🔥",
    "x" * 255,
    "long:" + "ü" * 5000,
]
TIMESTAMPS = [0, 1, -1, 1_700_000_000_123_456_789, 2**63 - 1, -(2**63)]


def extremes(dtype: np.dtype) -> list:
    if dtype.kind == "f":
        info = np.finfo(dtype)
        return [0.0, -0.0, 1.5, -2.25, info.max, info.min, info.tiny, np.inf, -np.inf, np.nan]
    info = np.iinfo(dtype)
    return sorted({0, 1, info.max, info.min, info.max - 1, info.min + 1, -1 if info.min else 2})


def random_array(dtype: np.dtype, length: int) -> np.ndarray:
    if dtype.kind == "f":
        return (RNG.standard_normal(length) * 1e6).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=length, dtype=dtype, endpoint=True)


def scalar_cases():
    for dtype in DTYPES:
        for value in extremes(dtype):
            yield dtype.type(value)
        yield from random_array(dtype, 5)


def array_cases():
    for dtype in DTYPES:
        for length in (0, 2, 3, 4, 5, 7, 8, 9, 1000):
            yield random_array(dtype, length)
        yield np.array(extremes(dtype), dtype=dtype)


def assert_same_value(ours, reference) -> None:
    assert type(ours) is type(reference)
    if isinstance(reference, np.ndarray):
        assert ours.dtype == reference.dtype
        assert ours.tobytes() == reference.tobytes()  # exact, including NaN and -0.0
    elif isinstance(reference, float):
        assert struct.pack("<d", ours) == struct.pack("<d", reference)
    else:
        assert ours == reference


def assert_reads_like_library(channel: str, value, timestamp_ns: int) -> bytes:
    ours = F144FastSerialiser(channel).serialise(Update(channel, value, timestamp_ns))
    expected = deserialise_f144(serialise_f144(channel, value, timestamp_ns))
    got = deserialise_f144(ours)
    assert got.source_name == expected.source_name == channel
    assert got.timestamp_unix_ns == expected.timestamp_unix_ns == timestamp_ns
    assert type(got.value) is type(expected.value)
    # Compare with what was sent, bit for bit: the library drops -0.0 to 0.0 (a scalar equal
    # to the schema default is left out), ours keeps the sign.
    sent = np.asarray(value)
    assert_same_value(got.value, sent.copy() if sent.ndim else sent.item())
    if sent.ndim or not (sent == 0 and np.signbit(sent)):
        assert_same_value(got.value, expected.value)
    check_structure(ours)
    return ours


def check_structure(buf: bytes) -> None:
    """f144's layout: LogData(source_name, timestamp, value_type, value) + a union member."""
    source_name, timestamp, value_type, value = fb.table(buf, fb.root(buf, b"f144"), [4, 8, 1, 4])
    assert None not in (source_name, timestamp, value_type, value)
    fb.string(buf, source_name)
    tag = buf[value_type]
    dtype = next(d for d, (scalar, array, _) in MEMBERS.items() if tag in (scalar, array))
    member = fb.follow(buf, value)
    if tag == MEMBERS[dtype][0]:
        assert fb.table(buf, member, [dtype.itemsize]) != [None]
    else:
        (vector_field,) = fb.table(buf, member, [4])
        fb.vector(buf, fb.follow(buf, vector_field), dtype.itemsize)


# ---- the cases ----


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_scalar_reads_back_like_library(dtype):
    values = [v for v in scalar_cases() if v.dtype == dtype]
    assert values
    for value, channel, timestamp in zip(
        values, itertools.cycle(CHANNELS), itertools.cycle(TIMESTAMPS)
    ):
        assert_reads_like_library(channel, value, timestamp)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_array_reads_back_like_library(dtype):
    arrays = [a for a in array_cases() if a.dtype == dtype]
    for array, channel in zip(arrays, itertools.cycle(reversed(CHANNELS))):
        assert_reads_like_library(channel, array, 1_700_000_000_000_000_001)


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_channel_name_and_timestamp(channel):
    for timestamp in TIMESTAMPS:
        assert_reads_like_library(channel, np.float64(-3.5), timestamp)
        assert_reads_like_library(channel, np.arange(3, dtype=np.int16), timestamp)


def test_one_serialiser_serves_many_updates_of_changing_dtype():
    serialiser = F144FastSerialiser("SIM:MIX")
    for value in [np.int8(-1), np.arange(4.0), np.uint64(2**64 - 1), np.array([], np.float32)]:
        got = deserialise_f144(serialiser.serialise(Update("SIM:MIX", value, 42)))
        assert_same_value(got.value, deserialise_f144(serialise_f144("SIM:MIX", value, 42)).value)


def test_big_endian_and_strided_arrays_are_read_as_their_values():
    serialiser = F144FastSerialiser("c")
    big = np.arange(6, dtype=">f8")
    strided = np.arange(10, dtype=np.int32)[::3]
    assert_same_value(
        deserialise_f144(serialiser.serialise(Update("c", big, 1))).value, big.astype("<f8")
    )
    assert_same_value(
        deserialise_f144(serialiser.serialise(Update("c", strided, 1))).value, strided.copy()
    )


def test_bools_become_ubyte_zero_and_one():
    serialiser = F144FastSerialiser("c")
    for value, expected in [(np.bool_(True), 1), (np.bool_(False), 0)]:
        got = deserialise_f144(serialiser.serialise(Update("c", value, 1))).value
        assert got == expected and isinstance(got, int)
    got = deserialise_f144(serialiser.serialise(Update("c", np.array([True, False, True]), 1)))
    assert got.value.dtype == np.uint8 and got.value.tolist() == [1, 0, 1]


def test_python_numbers_and_0d_arrays_are_accepted_as_scalars():
    serialiser = F144FastSerialiser("c")
    got = deserialise_f144(serialiser.serialise(Update("c", np.array(-7, np.int16), 1)))
    assert got.value == -7
    assert deserialise_f144(serialise_f144("c", np.int16(-7), 1)).value == -7
    assert deserialise_f144(serialiser.serialise(Update("c", 7, 1))).value == 7
    assert deserialise_f144(serialiser.serialise(Update("c", 2.5, 1))).value == 2.5


@pytest.mark.parametrize("implementation", [F144FastSerialiser, F144Serialiser])
@pytest.mark.parametrize(
    "value, message",
    [
        ("text", "f144 cannot carry strings; use f142"),
        (("a", "b"), "f144 cannot carry strings; use f142"),
        (np.array(["a", "b"]), "f144 cannot carry strings; use f142"),
        (Table({"value": np.arange(2)}), "tables"),
        (np.zeros((2, 2)), "1-D"),
        (np.float16(1.0), "float16"),
        (np.complex128(1j), "complex128"),
        (np.array([1, None], dtype=object), "object"),
        (None, "NoneType"),
    ],
)
def test_values_f144_cannot_carry_raise_unsupported_value(implementation, value, message):
    with pytest.raises(UnsupportedValue, match=message):
        implementation("c").serialise(Update("c", value, 1))


def test_timestamp_out_of_int64_range_is_unsupported_value():
    with pytest.raises(UnsupportedValue):
        F144FastSerialiser("c").serialise(Update("c", np.float64(1), 2**63))


def test_library_backed_serialiser_writes_the_library_bytes():
    value = np.arange(3, dtype=np.uint16)
    ours = F144Serialiser("c").serialise(Update("c", value, 9))
    assert ours == serialise_f144("c", value, 9)


def test_registry_uses_the_fast_writer_for_f144():
    assert isinstance(make_data_serialiser("f144", "c"), F144FastSerialiser)


def test_structure_check_rejects_a_broken_buffer():
    good = F144FastSerialiser("c").serialise(Update("c", np.float64(1), 1))
    broken = good[:4] + b"f142" + good[8:]
    with pytest.raises(AssertionError):
        check_structure(broken)
    truncated = good[:60]
    with pytest.raises(AssertionError):
        check_structure(truncated)


def test_channel_name_that_is_not_text_fails_per_update_not_at_creation():
    serialiser = make_data_serialiser("f144", "bad\ud800name")
    for value in (np.float64(1), np.arange(3)):
        with pytest.raises(UnsupportedValue, match="channel name"):
            serialiser.serialise(Update("bad", value, 1))
