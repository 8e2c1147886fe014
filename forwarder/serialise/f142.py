"""f142 log data (the older log schema): a value plus EPICS alarm status and severity.

Written by us with the flatbuffers Builder and the schema's generated table layout, because
ess-streaming-data-types 0.27.0's serialise_f142 (and deserialise_f142) use ``np.unicode_``,
which numpy 2 removed: every call raises AttributeError. The registry uses f142_fast.py,
which falls back to this writer for string arrays; this one is also its test reference.

Every message carries the alarm status and severity. Status names are Alarm.status (EPICS
spelling); "TIMEOUT" is f142's TIMED. An unknown status name falls back to NO_ALARM when the
severity is NO_ALARM and to UDF ("undefined") otherwise, so an alarm is never hidden.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from streaming_data_types.fbschemas.logdata_f142 import LogData
from streaming_data_types.fbschemas.logdata_f142.AlarmSeverity import AlarmSeverity
from streaming_data_types.fbschemas.logdata_f142.AlarmStatus import AlarmStatus
from streaming_data_types.fbschemas.logdata_f142.Value import Value

from forwarder.serialise.base import UnsupportedValue
from forwarder.serialise.errors import value_errors_as_unsupported
from forwarder.serialise.numeric import as_numeric
from forwarder.update import Alarm, Severity, Update

FILE_IDENTIFIER = b"f142"

F142_SEVERITY = {
    Severity.NO_ALARM: AlarmSeverity.NO_ALARM,
    Severity.MINOR: AlarmSeverity.MINOR,
    Severity.MAJOR: AlarmSeverity.MAJOR,
    Severity.INVALID: AlarmSeverity.INVALID,
}

# Status name -> f142 AlarmStatus: every name the schema has (NO_CHANGE is for "same as the
# previous message", which we never send), plus the EPICS spelling of TIMED.
F142_STATUS = {
    name: number
    for name, number in vars(AlarmStatus).items()
    if not name.startswith("_") and name != "NO_CHANGE"
}
F142_STATUS["TIMEOUT"] = AlarmStatus.TIMED


def f142_alarm(alarm: Alarm) -> tuple[int, int]:
    """(status, severity) numbers of ``alarm`` in f142's enums, with the fallback above."""
    severity = F142_SEVERITY.get(alarm.severity)
    if severity is None:
        raise UnsupportedValue(f"f142 has no severity for {alarm.severity!r}")
    status = F142_STATUS.get(str(alarm.status).upper())
    if status is None:
        no_alarm = alarm.severity == Severity.NO_ALARM
        status = AlarmStatus.NO_ALARM if no_alarm else AlarmStatus.UDF
    return status, severity


# dtype -> (union member for a scalar, Builder method that writes the scalar slot,
#           union member for an array). Each union member is a table with one field "value".
_NUMERIC_MEMBERS = {
    np.dtype("int8"): (Value.Byte, "PrependInt8Slot", Value.ArrayByte),
    np.dtype("uint8"): (Value.UByte, "PrependUint8Slot", Value.ArrayUByte),
    np.dtype("int16"): (Value.Short, "PrependInt16Slot", Value.ArrayShort),
    np.dtype("uint16"): (Value.UShort, "PrependUint16Slot", Value.ArrayUShort),
    np.dtype("int32"): (Value.Int, "PrependInt32Slot", Value.ArrayInt),
    np.dtype("uint32"): (Value.UInt, "PrependUint32Slot", Value.ArrayUInt),
    np.dtype("int64"): (Value.Long, "PrependInt64Slot", Value.ArrayLong),
    np.dtype("uint64"): (Value.ULong, "PrependUint64Slot", Value.ArrayULong),
    np.dtype("float32"): (Value.Float, "PrependFloat32Slot", Value.ArrayFloat),
    np.dtype("float64"): (Value.Double, "PrependFloat64Slot", Value.ArrayDouble),
}


def _one_field_table(builder: flatbuffers.Builder, write_field) -> int:
    builder.StartObject(1)
    write_field()
    return builder.EndObject()


def _write_value(builder: flatbuffers.Builder, value: object) -> tuple[int, int]:
    """Write the union member table for ``value``; returns (union type, table offset)."""
    if isinstance(value, str):
        text = builder.CreateString(value)
        return Value.String, _one_field_table(
            builder, lambda: builder.PrependUOffsetTRelativeSlot(0, text, 0)
        )
    if isinstance(value, tuple):
        if not all(isinstance(item, str) for item in value):
            raise UnsupportedValue("f142 string arrays must hold only str")
        texts = [builder.CreateString(item) for item in value]
        builder.StartVector(4, len(texts), 4)
        for text in reversed(texts):
            builder.PrependUOffsetTRelative(text)
        vector = builder.EndVector()
        return Value.ArrayString, _one_field_table(
            builder, lambda: builder.PrependUOffsetTRelativeSlot(0, vector, 0)
        )
    number = as_numeric(value, "f142")
    scalar_type, prepend_slot, array_type = _NUMERIC_MEMBERS[number.dtype]
    if isinstance(number, np.ndarray):
        vector = builder.CreateNumpyVector(number)
        return array_type, _one_field_table(
            builder, lambda: builder.PrependUOffsetTRelativeSlot(0, vector, 0)
        )
    item = number.item()
    return scalar_type, _one_field_table(
        builder, lambda: getattr(builder, prepend_slot)(0, item, 0)
    )


class F142Serialiser:
    """One stream's updates as f142, alarm status and severity on every message."""

    def __init__(self, channel: str) -> None:
        self._channel = channel

    def serialise(self, update: Update) -> bytes:
        status, severity = f142_alarm(update.alarm)
        builder = flatbuffers.Builder(256)
        builder.ForceDefaults(True)
        with value_errors_as_unsupported("f142"):
            value_type, value = _write_value(builder, update.value)
            source = builder.CreateString(self._channel)
            LogData.LogDataStart(builder)
            LogData.LogDataAddSourceName(builder, source)
            LogData.LogDataAddValueType(builder, value_type)
            LogData.LogDataAddValue(builder, value)
            LogData.LogDataAddTimestamp(builder, update.timestamp_ns)
            LogData.LogDataAddStatus(builder, status)
            LogData.LogDataAddSeverity(builder, severity)
            builder.Finish(LogData.LogDataEnd(builder), file_identifier=FILE_IDENTIFIER)
        return bytes(builder.Output())
