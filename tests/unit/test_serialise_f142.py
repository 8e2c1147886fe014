"""f142: values of every kind plus alarm status and severity, read back with the generated
flatbuffers accessors (the library's own deserialise_f142 fails under numpy 2).

Every behaviour test runs against both our writers: the fast byte-template one (used by the
registry) and the Builder-based one; generated cases then check they read back identically
and that the fast bytes are structurally sound.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from streaming_data_types.fbschemas.logdata_f142 import LogData
from streaming_data_types.fbschemas.logdata_f142.AlarmSeverity import AlarmSeverity
from streaming_data_types.fbschemas.logdata_f142.AlarmStatus import AlarmStatus
from streaming_data_types.fbschemas.logdata_f142.Value import Value
from streaming_data_types.logdata_f142 import _map_fb_enum_to_type

from forwarder.serialise import UnsupportedValue, make_data_serialiser
from forwarder.serialise.f142 import F142FastSerialiser
from forwarder.serialise.f142_builder import F142Serialiser
from forwarder.serialise.value_union import F142_MEMBERS as MEMBERS
from forwarder.serialise.value_union import NUMERIC_DTYPES
from forwarder.update import NO_ALARM, Alarm, Severity, Table, Update
from tests.unit import fb_structure as fb

DTYPES = sorted(NUMERIC_DTYPES, key=str)
MEMBER_NAMES = {
    "int8": "Byte", "uint8": "UByte", "int16": "Short", "uint16": "UShort", "int32": "Int",
    "uint32": "UInt", "int64": "Long", "uint64": "ULong", "float32": "Float", "float64": "Double",
}  # fmt: skip


def read_f142(buf: bytes):
    """(channel, value, value type, timestamp, status, severity) as stored in ``buf``."""
    assert buf[4:8] == b"f142"
    log = LogData.LogData.GetRootAsLogData(buf, 0)
    table = log.Value()
    member = _map_fb_enum_to_type[log.ValueType()]()
    member.Init(table.Bytes, table.Pos)
    if log.ValueType() == Value.ArrayString:
        value = tuple(member.Value(i).decode() for i in range(member.ValueLength()))
    elif log.ValueType() == Value.String:
        value = member.Value().decode()
    elif hasattr(member, "ValueAsNumpy"):
        value = member.ValueAsNumpy()
        value = value if isinstance(value, np.ndarray) else np.array([], DTYPES[0])
    else:
        value = member.Value()
    return (
        log.SourceName().decode(),
        value,
        log.ValueType(),
        log.Timestamp(),
        log.Status(),
        log.Severity(),
    )


@pytest.fixture(params=[F142FastSerialiser, F142Serialiser], ids=["fast", "builder"])
def serialise(request):
    """Serialise one update with each implementation in turn."""

    def serialise(value, alarm=NO_ALARM, channel="SIM:F142", timestamp=1_700_000_000_000_000_007):
        return request.param(channel).serialise(Update(channel, value, timestamp, alarm))

    return serialise


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_numeric_scalars_and_arrays_of_every_dtype(dtype, serialise):
    limits = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    for scalar in (dtype.type(limits.max), dtype.type(limits.min), dtype.type(1)):
        channel, value, kind, timestamp, _, _ = read_f142(serialise(scalar))
        assert channel == "SIM:F142" and timestamp == 1_700_000_000_000_000_007
        assert kind == getattr(Value, MEMBER_NAMES[dtype.name])
        assert value == scalar.item()
    array = np.array([limits.min, 0, limits.max], dtype=dtype)
    _, value, kind, _, _, _ = read_f142(serialise(array))
    assert kind == getattr(Value, "Array" + MEMBER_NAMES[dtype.name])
    assert value.dtype == dtype and value.tobytes() == array.tobytes()


def test_empty_array_keeps_its_type(serialise):
    _, value, kind, _, _, _ = read_f142(serialise(np.array([], np.float32)))
    assert kind == Value.ArrayFloat and len(value) == 0


def test_bool_becomes_ubyte(serialise):
    _, value, kind, _, _, _ = read_f142(serialise(np.bool_(True)))
    assert (kind, value) == (Value.UByte, 1)


@pytest.mark.parametrize("text", ["", "OPEN", "Température °C", "检测器 🧪", "x" * 3000])
def test_strings(text, serialise):
    channel, value, kind, _, _, _ = read_f142(serialise(text, channel="ünï:code"))
    assert (channel, value, kind) == ("ünï:code", text, Value.String)


@pytest.mark.parametrize("texts", [(), ("a",), ("OPEN", "CLOSED", ""), ("ü", "🧪") * 50])
def test_string_arrays(texts, serialise):
    _, value, kind, _, _, _ = read_f142(serialise(texts))
    assert (value, kind) == (texts, Value.ArrayString)


SEVERITIES = {
    Severity.NO_ALARM: AlarmSeverity.NO_ALARM,
    Severity.MINOR: AlarmSeverity.MINOR,
    Severity.MAJOR: AlarmSeverity.MAJOR,
    Severity.INVALID: AlarmSeverity.INVALID,
}
STATUS_NAMES = [
    "NO_ALARM", "HIGH", "HIHI", "LOW", "LOLO", "STATE", "COS", "COMM", "HWLIMIT", "CALC",
    "SCAN", "LINK", "SOFT", "BAD_SUB", "UDF", "DISABLE", "SIMM", "READ_ACCESS",
    "WRITE_ACCESS", "READ", "WRITE", "TIMED",
]  # fmt: skip


@pytest.mark.parametrize("severity", list(Severity))
@pytest.mark.parametrize("status", STATUS_NAMES)
def test_every_status_and_severity_is_on_every_message(status, severity, serialise):
    *_, got_status, got_severity = read_f142(serialise(np.float64(1), Alarm(severity, status)))
    assert got_status == getattr(AlarmStatus, status)
    assert got_severity == SEVERITIES[severity]


def test_no_alarm_is_written_explicitly_not_left_to_schema_defaults(serialise):
    *_, status, severity = read_f142(serialise("x"))
    assert (status, severity) == (AlarmStatus.NO_ALARM, AlarmSeverity.NO_ALARM)


def test_ca_timeout_is_f142_timed(serialise):
    *_, status, _ = read_f142(serialise(np.int32(1), Alarm(Severity.MAJOR, "TIMEOUT")))
    assert status == AlarmStatus.TIMED


def test_unknown_status_falls_back_by_severity(serialise):
    *_, status, _ = read_f142(serialise(np.int32(1), Alarm(Severity.MINOR, "WEIRD")))
    assert status == AlarmStatus.UDF
    *_, status, _ = read_f142(serialise(np.int32(1), Alarm(Severity.NO_ALARM, "WEIRD")))
    assert status == AlarmStatus.NO_ALARM


@pytest.mark.parametrize(
    "value, timestamp, message",
    [
        (Table({"value": np.arange(2)}), 1, "tables"),
        (np.zeros((2, 2)), 1, "1-D"),
        (np.complex64(1), 1, "complex64"),
        (("a", 3), 1, "only str"),
        ("\ud800", 1, "f142"),
        (np.float64(1), -1, "cannot carry"),
    ],
)
def test_bad_values_raise_unsupported_value(value, timestamp, message, serialise):
    with pytest.raises(UnsupportedValue, match=message):
        serialise(value, timestamp=timestamp)


def test_registry_gives_the_fast_f142():
    assert isinstance(make_data_serialiser("f142", "c"), F142FastSerialiser)


def check_structure(buf: bytes) -> None:
    """f142's layout: LogData(source_name, value_type, value, timestamp, status, severity)."""
    source, value_type, value, timestamp, status, severity = fb.table(
        buf, fb.root(buf, b"f142"), [4, 1, 4, 8, 2, 2]
    )
    assert None not in (source, value_type, value, timestamp, status, severity)
    fb.string(buf, source)
    tag = buf[value_type]
    member = fb.follow(buf, value)
    if tag == Value.String:
        fb.string(buf, fb.table(buf, member, [4])[0])
        return
    dtype = next(d for d, (scalar, array, _) in MEMBERS.items() if tag in (scalar, array))
    if tag == MEMBERS[dtype][0]:
        assert fb.table(buf, member, [dtype.itemsize]) != [None]
    else:
        (vector_field,) = fb.table(buf, member, [4])
        fb.vector(buf, fb.follow(buf, vector_field), dtype.itemsize)


def generated_values():
    rng = np.random.default_rng(142)
    for dtype in DTYPES:
        limits = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
        for value in (limits.min, limits.max, 0, 1):
            yield dtype.type(value)
        for length in (0, 1, 2, 3, 5, 8, 1000):
            yield (rng.standard_normal(length) * 100).astype(dtype)
    yield from ["", "a", "abc", "abcd", "Température °C", "检测器 🧪", "x" * 4097]
    yield np.bool_(False)
    yield np.array([True, False])


CHANNELS = ["", "a", "ab", "abc", "abcd", "SIM:F142", "ünï:ĉode", "🧪" * 300]


def test_fast_and_builder_writers_read_back_identically_over_generated_cases():
    alarms = [Alarm(severity, status) for severity in Severity for status in ("HIHI", "X")]
    count = 0
    for index, value in enumerate(generated_values()):
        channel = CHANNELS[index % len(CHANNELS)]
        alarm = alarms[index % len(alarms)]
        timestamp = [0, 1, 2**64 - 1, 1_700_000_000_000_000_000][index % 4]
        update = Update(channel, value, timestamp, alarm)
        ours = F142FastSerialiser(channel).serialise(update)
        check_structure(ours)
        got, expected = read_f142(ours), read_f142(F142Serialiser(channel).serialise(update))
        assert got[0] == expected[0] == channel
        assert got[2:] == expected[2:]
        if isinstance(expected[1], np.ndarray):
            assert got[1].dtype == expected[1].dtype
            assert got[1].tobytes() == expected[1].tobytes()
        else:
            assert type(got[1]) is type(expected[1]) and got[1] == expected[1]
        count += 1
    assert count > 100


def test_structure_check_catches_a_misplaced_field():
    good = F142FastSerialiser("c").serialise(Update("c", np.float64(1), 1))
    vtable = 8
    bad = bytearray(good)
    struct.pack_into("<H", bad, vtable + 4 + 2 * 3, 17)  # timestamp at +17: misaligned
    with pytest.raises(AssertionError, match="misaligned"):
        check_structure(bytes(bad))


def test_fast_writer_name_that_is_not_text_fails_per_update_not_at_creation():
    serialiser = make_data_serialiser("f142", "bad\ud800name")
    with pytest.raises(UnsupportedValue, match="channel name"):
        serialiser.serialise(Update("bad", np.float64(1), 1))
