"""Decode the forwarder's output FlatBuffers, describe them, compare their values exactly.

Built on the generated readers of ``streaming_data_types``. f144 and f142 are read here
directly rather than through ``deserialise_f144``/``deserialise_f142``: those drop the
value's FlatBuffers type (a scalar Double and a scalar Float both come back as a Python
float), and ``deserialise_f142`` fails on scalars with numpy 2 (it uses ``np.unicode_``).
Every decoded message is a small frozen dataclass whose ``value`` is a numpy scalar or array
of the exact dtype carried in the buffer, so tests can compare value and dtype together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from streaming_data_types.alarm_al00 import deserialise_al00
from streaming_data_types.array_1d_se00 import deserialise_se00
from streaming_data_types.epics_connection_ep01 import deserialise_ep01
from streaming_data_types.fbschemas.forwarder_config_update_fc00.Protocol import Protocol
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.fbschemas.logdata_f142 import LogData as f142_LogData
from streaming_data_types.fbschemas.logdata_f142.AlarmSeverity import AlarmSeverity
from streaming_data_types.fbschemas.logdata_f142.AlarmStatus import AlarmStatus
from streaming_data_types.fbschemas.logdata_f142.Value import Value as F142Value
from streaming_data_types.fbschemas.logdata_f144 import f144_LogData
from streaming_data_types.fbschemas.logdata_f144.Value import Value as F144Value
from streaming_data_types.fbschemas.sample_environment_senv.SampleEnvironmentData import (
    SampleEnvironmentData as SenvData,
)
from streaming_data_types.forwarder_config_update_fc00 import deserialise_fc00
from streaming_data_types.sample_environment_senv import deserialise_senv
from streaming_data_types.status_x5f2 import deserialise_x5f2
from streaming_data_types.timestamps_tdct import deserialise_tdct

# FlatBuffers union member name -> numpy dtype of its value (f144 and f142 share the names).
_SCALAR_DTYPES = {
    "Byte": np.int8,
    "UByte": np.uint8,
    "Short": np.int16,
    "UShort": np.uint16,
    "Int": np.int32,
    "UInt": np.uint32,
    "Long": np.int64,
    "ULong": np.uint64,
    "Float": np.float32,
    "Double": np.float64,
}


def _enum_names(enum_class: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


_F144_TYPES = _enum_names(F144Value)
_F142_TYPES = _enum_names(F142Value)
_F142_STATUS = _enum_names(AlarmStatus)
_F142_SEVERITY = _enum_names(AlarmSeverity)
_FC00_TYPES = _enum_names(UpdateType)
_FC00_PROTOCOLS = _enum_names(Protocol)


def schema_id(payload: bytes | bytearray | memoryview | None) -> str:
    """The four-character FlatBuffers file identifier (bytes 4:8), or "" if too short."""
    if payload is None or len(payload) < 8:
        return ""
    return bytes(payload[4:8]).decode("ascii", errors="replace")


# -- decoded messages -------------------------------------------------------------------------


@dataclass(frozen=True)
class F144:
    source: str
    value: np.generic | np.ndarray
    value_type: str  # the union member, e.g. "Double", "ArrayInt"
    timestamp_ns: int
    schema: str = "f144"


@dataclass(frozen=True)
class F142:
    source: str
    value: np.generic | np.ndarray | str | tuple[str, ...]
    value_type: str  # e.g. "Double", "String", "ArrayString"
    timestamp_ns: int
    alarm_status: str  # AlarmStatus name, e.g. "NO_ALARM", "HIGH", "NO_CHANGE"
    alarm_severity: str  # AlarmSeverity name, e.g. "NO_ALARM", "MINOR", "NO_CHANGE"
    schema: str = "f142"


@dataclass(frozen=True)
class Al00:
    source: str
    timestamp_ns: int
    severity: str  # "OK", "MINOR", "MAJOR", "INVALID"
    message: str
    schema: str = "al00"


@dataclass(frozen=True)
class Ep01:
    source: str
    timestamp_ns: int
    status: str  # "NEVER_CONNECTED", "CONNECTED", "DISCONNECTED", ...
    service_id: str
    schema: str = "ep01"


@dataclass(frozen=True)
class Tdct:
    source: str
    timestamps: np.ndarray  # uint64 ns
    sequence_counter: int
    schema: str = "tdct"


@dataclass(frozen=True)
class SampleEnv:
    """se00 or senv (``schema`` says which); ``timestamp_ns`` is the packet timestamp."""

    source: str
    channel: int
    timestamp_ns: int
    sample_ts_delta: int
    ts_location: int
    message_counter: int
    values: np.ndarray
    value_ts: np.ndarray | None
    schema: str


@dataclass(frozen=True)
class X5f2:
    software_name: str
    software_version: str
    service_id: str
    host_name: str
    process_id: int
    update_interval: int
    status_json: str
    status: dict | None  # status_json parsed, None if it is not JSON
    schema: str = "x5f2"

    def streams(self) -> list[dict]:
        """The ``streams`` list of the status JSON ([] if absent)."""
        if not isinstance(self.status, dict):
            return []
        streams = self.status.get("streams", [])
        return streams if isinstance(streams, list) else []


@dataclass(frozen=True)
class Fc00:
    """A config command (as the storage topic holds them)."""

    update_type: str  # "ADD", "REMOVE", "REMOVEALL", "REPLACE"
    streams: tuple[tuple[str, str, str, str, bool], ...]  # (channel, protocol, topic, schema,
    #                                                        periodic)
    schema: str = "fc00"
    source: str = ""

    @property
    def keys(self) -> set[tuple[str, str, str, str]]:
        """(channel, protocol, topic, schema) of every stream, as status_streams gives them."""
        return {s[:4] for s in self.streams}


@dataclass(frozen=True)
class Unknown:
    schema: str
    payload: bytes
    error: str = ""
    source: str = ""


# -- decoding ---------------------------------------------------------------------------------


def _union_value(table, type_name: str):
    """The value of a f144/f142 union member as a numpy scalar/array or str."""
    if type_name == "String":
        raw = table.String(table.Pos + table.Offset(4)) if table.Offset(4) else b""
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    if type_name == "ArrayString":
        offset = table.Offset(4)
        if not offset:
            return ()
        vector = table.Vector(offset)
        length = table.VectorLen(offset)
        return tuple(table.String(vector + 4 * i).decode("utf-8") for i in range(length))
    if type_name.startswith("Array"):
        dtype = np.dtype(_SCALAR_DTYPES[type_name[len("Array") :]])
        offset = table.Offset(4)
        if not offset:
            return np.zeros(0, dtype=dtype)
        return table.GetVectorAsNumpy(_flags(dtype), offset).astype(dtype, copy=True)
    dtype = np.dtype(_SCALAR_DTYPES[type_name])
    offset = table.Offset(4)
    if not offset:
        return dtype.type(0)
    return dtype.type(table.Get(_flags(dtype), offset + table.Pos))


def _flags(dtype: np.dtype):
    from flatbuffers import number_types as nt

    return {
        np.dtype(np.int8): nt.Int8Flags,
        np.dtype(np.uint8): nt.Uint8Flags,
        np.dtype(np.int16): nt.Int16Flags,
        np.dtype(np.uint16): nt.Uint16Flags,
        np.dtype(np.int32): nt.Int32Flags,
        np.dtype(np.uint32): nt.Uint32Flags,
        np.dtype(np.int64): nt.Int64Flags,
        np.dtype(np.uint64): nt.Uint64Flags,
        np.dtype(np.float32): nt.Float32Flags,
        np.dtype(np.float64): nt.Float64Flags,
    }[np.dtype(dtype)]


def _union_table(union):
    """The flatbuffers Table of a union field, as returned by ``LogData.Value()``."""
    from flatbuffers.table import Table

    return Table(union.Bytes, union.Pos)


def decode_f144(payload: bytes) -> F144:
    buf = bytearray(payload)
    log = f144_LogData.f144_LogData.GetRootAsf144_LogData(buf, 0)
    type_name = _F144_TYPES.get(log.ValueType(), f"?{log.ValueType()}")
    union = log.Value()
    value = _union_value(_union_table(union), type_name) if union is not None else None
    source = log.SourceName()
    return F144(
        source=source.decode() if source else "",
        value=value,
        value_type=type_name,
        timestamp_ns=log.Timestamp(),
    )


def decode_f142(payload: bytes) -> F142:
    buf = bytearray(payload)
    log = f142_LogData.LogData.GetRootAsLogData(buf, 0)
    type_name = _F142_TYPES.get(log.ValueType(), f"?{log.ValueType()}")
    union = log.Value()
    value = _union_value(_union_table(union), type_name) if union is not None else None
    source = log.SourceName()
    return F142(
        source=source.decode() if source else "",
        value=value,
        value_type=type_name,
        timestamp_ns=log.Timestamp(),
        alarm_status=_F142_STATUS.get(log.Status(), f"?{log.Status()}"),
        alarm_severity=_F142_SEVERITY.get(log.Severity(), f"?{log.Severity()}"),
    )


def decode_al00(payload: bytes) -> Al00:
    info = deserialise_al00(bytearray(payload))
    return Al00(info.source, info.timestamp_ns, info.severity.name, info.message)


def decode_ep01(payload: bytes) -> Ep01:
    info = deserialise_ep01(bytearray(payload))
    return Ep01(info.source_name, info.timestamp, info.status.name, info.service_id)


def decode_tdct(payload: bytes) -> Tdct:
    info = deserialise_tdct(bytearray(payload))
    return Tdct(info.name, np.asarray(info.timestamps).copy(), info.sequence_counter)


def decode_se00(payload: bytes) -> SampleEnv:
    info = deserialise_se00(bytearray(payload))
    return SampleEnv(
        source=info.name,
        channel=info.channel,
        timestamp_ns=info.timestamp_unix_ns,
        sample_ts_delta=info.sample_ts_delta,
        ts_location=int(info.ts_location),
        message_counter=info.message_counter,
        values=np.asarray(info.values).copy(),
        value_ts=None if info.value_ts is None else np.asarray(info.value_ts).copy(),
        schema="se00",
    )


def decode_senv(payload: bytes) -> SampleEnv:
    buf = bytearray(payload)
    info = deserialise_senv(buf)
    raw = SenvData.GetRootAsSampleEnvironmentData(buf, 0)
    return SampleEnv(
        source=info.name,
        channel=info.channel,
        timestamp_ns=raw.PacketTimestamp(),
        sample_ts_delta=info.sample_ts_delta,
        ts_location=int(info.ts_location),
        message_counter=info.message_counter,
        values=np.asarray(info.values).copy(),
        value_ts=None if info.value_ts is None else np.asarray(info.value_ts).copy(),
        schema="senv",
    )


def decode_x5f2(payload: bytes) -> X5f2:
    info = deserialise_x5f2(bytearray(payload))
    try:
        status = json.loads(info.status_json) if info.status_json else None
    except ValueError:
        status = None
    return X5f2(*info, status=status)


def decode_fc00(payload: bytes) -> Fc00:
    info = deserialise_fc00(bytearray(payload))
    streams = tuple(
        (
            s.channel,
            _FC00_PROTOCOLS.get(s.protocol, str(s.protocol)),
            s.topic,
            s.schema,
            bool(s.periodic),
        )
        for s in info.streams
    )
    return Fc00(_FC00_TYPES.get(info.config_change, str(info.config_change)), streams)


_DECODERS = {
    "fc00": decode_fc00,
    "f144": decode_f144,
    "f142": decode_f142,
    "al00": decode_al00,
    "ep01": decode_ep01,
    "tdct": decode_tdct,
    "se00": decode_se00,
    "senv": decode_senv,
    "x5f2": decode_x5f2,
}


def decode(payload: bytes | None):
    """Decode any forwarder output by its schema id; ``Unknown`` for anything else or junk."""
    if payload is None:
        return Unknown("", b"", "no payload")
    schema = schema_id(payload)
    decoder = _DECODERS.get(schema)
    if decoder is None:
        return Unknown(schema, bytes(payload), "unknown schema id")
    try:
        return decoder(bytes(payload))
    except Exception as e:  # noqa: BLE001 - a broken buffer is data to report, not a crash
        return Unknown(schema, bytes(payload), f"{type(e).__name__}: {e}")


# -- describing -------------------------------------------------------------------------------


def describe(message) -> str:
    if isinstance(message, (F144, F142)):
        extra = ""
        if isinstance(message, F142):
            extra = f" alarm={message.alarm_status}/{message.alarm_severity}"
        value = message.value
        if isinstance(value, np.ndarray):
            value = value.tolist()
        return (
            f"{message.schema} {message.source} {message.value_type}={value!r} "
            f"t={message.timestamp_ns}{extra}"
        )
    if isinstance(message, Al00):
        return f"al00 {message.source} {message.severity} {message.message!r}"
    if isinstance(message, Ep01):
        return f"ep01 {message.source} {message.status}"
    if isinstance(message, Tdct):
        return f"tdct {message.source} {message.timestamps.tolist()}"
    if isinstance(message, SampleEnv):
        return f"{message.schema} {message.source} ch={message.channel} {message.values.tolist()}"
    if isinstance(message, Fc00):
        return f"fc00 {message.update_type} {list(message.streams)}"
    if isinstance(message, X5f2):
        return f"x5f2 {message.service_id} {message.status_json[:200]}"
    return f"unknown {message.schema!r} {message.error}"


# -- comparing --------------------------------------------------------------------------------


def values_equal(actual, expected, dtype=None) -> bool:
    """Exact equality of value and (if given) dtype; arrays compared element-wise."""
    if isinstance(expected, str):
        return isinstance(actual, str) and actual == expected
    if isinstance(expected, (tuple, list)) and expected and isinstance(expected[0], str):
        return isinstance(actual, tuple) and list(actual) == list(expected)
    if dtype is not None and np.asarray(actual).dtype != np.dtype(dtype):
        return False
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape and not (a.size == e.size == 1):
        return False
    return bool(np.array_equal(a.reshape(-1), e.reshape(-1)))
