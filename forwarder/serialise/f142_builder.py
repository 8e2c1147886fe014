"""f142 log data (the older log schema): a value plus EPICS alarm status and severity.

Written by us with the flatbuffers Builder and the schema's generated table layout, because
ess-streaming-data-types 0.27.0's serialise_f142 (and deserialise_f142) use ``np.unicode_``,
which numpy 2 removed: every call raises AttributeError. The registry uses f142.py,
which falls back to this writer for string arrays; this one is also its test reference.

Every message carries the alarm status and severity (mapped in mappings.py).
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from streaming_data_types.fbschemas.logdata_f142 import LogData
from streaming_data_types.fbschemas.logdata_f142.Value import Value

from forwarder.serialise.base import UnsupportedValue
from forwarder.serialise.errors import value_errors_as_unsupported
from forwarder.serialise.mappings import f142_alarm
from forwarder.serialise.numeric import as_numeric
from forwarder.serialise.value_union import F142_MEMBERS
from forwarder.update import Update

FILE_IDENTIFIER = b"f142"


def _prepend_slot_name(dtype: np.dtype) -> str:
    """The Builder method that writes a scalar slot of ``dtype``, e.g. PrependUint8Slot."""
    return f"Prepend{dtype.name.capitalize()}Slot"


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
    scalar_type, array_type, _ = F142_MEMBERS[number.dtype]
    if isinstance(number, np.ndarray):
        vector = builder.CreateNumpyVector(number)
        return array_type, _one_field_table(
            builder, lambda: builder.PrependUOffsetTRelativeSlot(0, vector, 0)
        )
    item = number.item()
    prepend_slot = getattr(builder, _prepend_slot_name(number.dtype))
    return scalar_type, _one_field_table(builder, lambda: prepend_slot(0, item, 0))


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
