"""A fast f142 writer: per-stream byte templates filled in with ``struct``, like f144.py.

Numbers, numeric arrays and strings take the fast path; string arrays (rare) go to the
Builder-based writer in f142_builder.py. Alarm status and severity are on every message.

Byte layout (little-endian; offsets from the message start, taken as 8-aligned):

    off  size  content
    0    4     u32 offset of the root table (32)
    4    4     file identifier b"f142"
    8    16    vtable of LogData, u16 x 8: [vtable size 16, table size 28,
               source_name at +4, value_type at +24, value at +8, timestamp at +16,
               status at +12, severity at +14]
    24   6     vtable of the value table, u16 x 3: [6, table size 16, value at +F]
               F = 8 for a scalar member, 4 for an array or String member
    30   2     zero padding
    32   28    LogData table:
                 +0  i32 offset back to its vtable: 32 - 8 = 24
                 +4  u32 offset from this field (36) to the source name (80): 44
                 +8  u32 offset from this field (40) to the value table (64): 24
                 +12 u16 alarm status, +14 u16 alarm severity
                 +16 u64 timestamp, ns since the Unix epoch
                 +24 u8 union tag, 3 pad bytes
    60   4     zero padding, so the value table's 8-byte slot is 8-aligned
    64   16    value table (the union member, one field "value"):
                 +0  i32 offset back to its vtable: 64 - 24 = 40
                 scalar: +4 4 pad bytes, +8 the value, zero-padded to 8 bytes
                 array or String: +4 u32 offset from this field (68) to V: V - 68, 8 pad
    80   ...   source name: u32 byte count, UTF-8, NUL, zero padding to 4 bytes; arrays
               and strings pad further so that V + 4 is 8-aligned
    V    ...   arrays: u32 element count, elements; String: u32 byte count, UTF-8, NUL
"""

from __future__ import annotations

import struct

import numpy as np
from streaming_data_types.fbschemas.logdata_f142.Value import Value

from forwarder.serialise.base import UnsupportedValue
from forwarder.serialise.f142_builder import F142Serialiser
from forwarder.serialise.fb_layout import fb_string, utf8
from forwarder.serialise.mappings import f142_alarm
from forwarder.serialise.numeric import as_numeric
from forwarder.serialise.value_union import F142_MEMBERS
from forwarder.update import Update

FILE_IDENTIFIER = b"f142"

ROOT_TABLE = 32
VALUE_TABLE = 64
SOURCE_NAME = 80

def _head(value_field: int) -> bytes:
    """Bytes 0..44: root offset, identifier, vtables, padding, LogData's first 12 bytes."""
    return b"".join(
        (
            struct.pack("<I4s", ROOT_TABLE, FILE_IDENTIFIER),
            struct.pack("<8H", 16, 28, 4, 24, 8, 16, 12, 14),
            struct.pack("<3H2x", 6, 16, value_field),
            struct.pack(
                "<iII",
                ROOT_TABLE - 8,
                SOURCE_NAME - (ROOT_TABLE + 4),
                VALUE_TABLE - (ROOT_TABLE + 8),
            ),
        )
    )


def _tag_and_value_table_start(union_tag: int) -> bytes:
    """Bytes 56..68: union tag, padding, the value table's offset back to its vtable."""
    return struct.pack("<B7xi", union_tag, VALUE_TABLE - 24)


class _ScalarPacker:
    """Packs (status, severity, timestamp, value) into a whole message in one struct call."""

    def __init__(self, name: bytes, union_tag: int, code: str) -> None:
        self.head = _head(value_field=8)
        self.middle = _tag_and_value_table_start(union_tag) + bytes(4)
        self.tail = fb_string(name)
        # 0..44 head, 44 status, 46 severity, 48..56 timestamp, 56..72 middle,
        # 72..80 value + zero padding, 80.. source name
        size = struct.calcsize(code)
        self.struct = struct.Struct(f"<44sHHQ16s{code}{8 - size}x{len(self.tail)}s")

    def pack(self, status: int, severity: int, timestamp_ns: int, value: object) -> bytes:
        return self.struct.pack(
            self.head, status, severity, timestamp_ns, self.middle, value, self.tail
        )


class _VectorPacker:
    """Packs the fixed part of a message whose value is a vector (array or String)."""

    def __init__(self, name: bytes, union_tag: int) -> None:
        text = fb_string(name)
        vector = SOURCE_NAME + len(text)
        vector += -(vector + 4) % 8  # elements (at vector + 4) 8-aligned
        self.head = _head(value_field=4)
        self.middle = b"".join(
            (
                _tag_and_value_table_start(union_tag),
                struct.pack("<I8x", vector - (VALUE_TABLE + 4)),
                text,
                bytes(vector - SOURCE_NAME - len(text)),
            )
        )
        # 0..44 head, 44 status, 46 severity, 48..56 timestamp, 56..V middle, V count
        self.struct = struct.Struct(f"<44sHHQ{len(self.middle)}sI")

    def pack(self, status: int, severity: int, timestamp_ns: int, count: int, data: bytes) -> bytes:
        fixed = self.struct.pack(self.head, status, severity, timestamp_ns, self.middle, count)
        return fixed + data


class F142FastSerialiser:
    """One stream's updates as f142; readable exactly like the Builder-based writer's."""

    def __init__(self, channel: str) -> None:
        self._channel = channel
        self._slow = F142Serialiser(channel)
        # ("scalar" | "array" | "string", dtype or None) -> packer
        self._packers: dict[tuple, _ScalarPacker | _VectorPacker] = {}
        # The common case: found by the value's Python type, without touching its dtype.
        self._scalars_by_type: dict[type, _ScalarPacker] = {}

    def _packer(self, key: tuple):
        # Made on first use; encoding the name here turns a name that is not valid text
        # into an UnsupportedValue per update instead of a failure to create the stream.
        packer = self._packers.get(key)
        if packer is None:
            name = utf8(self._channel, "f142 channel name")
            kind, dtype = key
            if kind == "string":
                packer = _VectorPacker(name, Value.String)
            elif kind == "array":
                packer = _VectorPacker(name, F142_MEMBERS[dtype][1])
            else:
                union_tag, _, code = F142_MEMBERS[dtype]
                packer = _ScalarPacker(name, union_tag, code)
            self._packers[key] = packer
        return packer

    def serialise(self, update: Update) -> bytes:
        value = update.value
        if isinstance(value, tuple):
            return self._slow.serialise(update)
        status, severity = f142_alarm(update.alarm)
        timestamp = update.timestamp_ns
        scalar = self._scalars_by_type.get(type(value))
        try:
            if scalar is not None:
                return scalar.pack(status, severity, timestamp, value)
            if isinstance(value, str):
                text = utf8(value, "f142 string value")
                return self._packer(("string", None)).pack(
                    status, severity, timestamp, len(text), text + b"\0"
                )
            number = as_numeric(value, "f142")
            dtype = number.dtype
            if isinstance(number, np.ndarray):
                data = number.astype(dtype.newbyteorder("<"), copy=False).tobytes()
                return self._packer(("array", dtype)).pack(
                    status, severity, timestamp, len(number), data
                )
            scalar = self._packer(("scalar", dtype))
            if type(number) is type(value):
                self._scalars_by_type[type(value)] = scalar
            return scalar.pack(status, severity, timestamp, number)
        except struct.error as error:
            raise UnsupportedValue(f"f142 cannot carry this update: {error}") from None
