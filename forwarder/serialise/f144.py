"""A fast f144 writer: per-stream byte templates filled in with ``struct``.

The library's serialise_f144 drives the generic flatbuffers Builder (~90 µs per scalar).
Every f144 message of one stream and one dtype has the same shape, so we lay the bytes out
once per (stream, dtype) and per update only pack the timestamp and the value into it.

Byte layout (all little-endian; u16/u32/i32/i64 are FlatBuffers' ushort/uoffset/soffset/
long). Offsets are from the start of the message, which FlatBuffers takes as 8-aligned.

    off  size  content
    0    4     u32 offset of the root table (always 32)
    4    4     file identifier b"f144"
    8    12    vtable of LogData, u16 x 6: [vtable size 12, table size 24,
               source_name at +4, timestamp at +8, value_type at +20, value at +16]
    20   6     vtable of the value table, u16 x 3: [6, table size 16, value at +F]
               F = 8 for a scalar member (Double, Int, ...), 4 for an array member
    26   6     zero padding, so the LogData table (and its int64) is 8-aligned
    32   24    LogData table:
                 +0  i32 offset back to its vtable: 32 - 8 = 24
                 +4  u32 offset from this field (36) to the source name (72): 36
                 +8  i64 timestamp, ns since the Unix epoch
                 +16 u32 offset from this field (48) to the value table (56): 8
                 +20 u8 union tag (which member of the Value union follows), 3 pad bytes
    56   16    value table (the union member, a table with one field "value"):
                 +0  i32 offset back to its vtable: 56 - 20 = 36
                 scalar: +4 4 pad bytes, +8 the value, zero-padded to 8 bytes
                 array:  +4 u32 offset from this field (60) to the vector (V): V - 60,
                         +8 8 pad bytes
    72   ...   source name: u32 byte count, UTF-8 bytes, NUL, zero padding to 4 bytes;
               arrays pad further so that V + 4 is 8-aligned (the elements are aligned)
    V    ...   arrays only: u32 element count, then the elements

Only the timestamp, the value (or the element count and elements) change per update.
"""

from __future__ import annotations

import struct

import numpy as np

from forwarder.serialise.base import UnsupportedValue
from forwarder.serialise.fb_layout import fb_string, utf8
from forwarder.serialise.numeric import as_numeric
from forwarder.serialise.value_union import F144_MEMBERS
from forwarder.update import Update

FILE_IDENTIFIER = b"f144"

ROOT_TABLE = 32
VALUE_TABLE = 56
SOURCE_NAME = 72

def _head(value_field: int) -> bytes:
    """Bytes 0..40: root offset, identifier, both vtables, padding, LogData's first 8 bytes."""
    return b"".join(
        (
            struct.pack("<I4s", ROOT_TABLE, FILE_IDENTIFIER),
            struct.pack("<6H", 12, 24, 4, 8, 20, 16),
            struct.pack("<3H", 6, 16, value_field),
            bytes(6),
            struct.pack("<iI", ROOT_TABLE - 8, SOURCE_NAME - (ROOT_TABLE + 4)),
        )
    )


def _logdata_rest(union_tag: int) -> bytes:
    """Bytes 48..56: LogData's value offset, union tag and padding."""
    return struct.pack("<IB3x", VALUE_TABLE - (ROOT_TABLE + 16), union_tag)


class _ScalarPacker:
    """Packs (timestamp, value) of one dtype into a whole message in one struct call."""

    def __init__(self, name: bytes, dtype: np.dtype) -> None:
        union_tag, _, code = F144_MEMBERS[dtype]
        self.head = _head(value_field=8)
        self.middle = _logdata_rest(union_tag) + struct.pack("<i4x", VALUE_TABLE - 20)
        self.tail = fb_string(name)
        size = struct.calcsize(code)
        # bytes 0..40 head, 40..48 timestamp, 48..64 middle, 64..72 value + zero padding,
        # 72.. source name
        self.struct = struct.Struct(f"<40sq16s{code}{8 - size}x{len(self.tail)}s")

    def pack(self, timestamp_ns: int, value: object) -> bytes:
        return self.struct.pack(self.head, timestamp_ns, self.middle, value, self.tail)


class _ArrayPacker:
    """Packs (timestamp, element count) into a message prefix; the elements follow it."""

    def __init__(self, name: bytes, dtype: np.dtype) -> None:
        _, union_tag, _ = F144_MEMBERS[dtype]
        text = fb_string(name)
        vector = SOURCE_NAME + len(text)
        vector += -(vector + 4) % 8  # elements (at vector + 4) 8-aligned
        self.head = _head(value_field=4)
        self.middle = b"".join(
            (
                _logdata_rest(union_tag),
                struct.pack("<iI8x", VALUE_TABLE - 20, vector - (VALUE_TABLE + 4)),
                text,
                bytes(vector - SOURCE_NAME - len(text)),
            )
        )
        # bytes 0..40 head, 40..48 timestamp, 48..V middle (up to the vector), V..V+4 count
        self.struct = struct.Struct(f"<40sq{len(self.middle)}sI")
        self.little_endian = dtype.newbyteorder("<")

    def pack(self, timestamp_ns: int, array: np.ndarray) -> bytes:
        prefix = self.struct.pack(self.head, timestamp_ns, self.middle, len(array))
        return prefix + array.astype(self.little_endian, copy=False).tobytes()


class _Packers(dict):
    """dtype -> packer for one stream, each made on first use (most PVs have one dtype)."""

    def __init__(self, channel: str, make) -> None:
        super().__init__()
        self._channel = channel
        self._make = make

    def __missing__(self, dtype: np.dtype):
        # Encoding here, not in the constructor, turns a channel name that is not valid
        # text into an UnsupportedValue per update instead of a failure to create the stream.
        packer = self[dtype] = self._make(utf8(self._channel, "f144 channel name"), dtype)
        return packer


class F144FastSerialiser:
    """One stream's updates as f144, byte-compatible with the library's reader."""

    def __init__(self, channel: str) -> None:
        self._channel = channel
        self._scalars = _Packers(channel, _ScalarPacker)
        self._arrays = _Packers(channel, _ArrayPacker)
        # The common case: found by the value's Python type, without touching its dtype.
        self._scalars_by_type: dict[type, _ScalarPacker] = {}

    def serialise(self, update: Update) -> bytes:
        value = update.value
        scalar = self._scalars_by_type.get(type(value))
        try:
            if scalar is not None:
                return scalar.pack(update.timestamp_ns, value)
            number = as_numeric(value, "f144")
            if isinstance(number, np.ndarray):
                return self._arrays[number.dtype].pack(update.timestamp_ns, number)
            scalar = self._scalars[number.dtype]
            if type(number) is type(value):
                self._scalars_by_type[type(value)] = scalar
            return scalar.pack(update.timestamp_ns, number)
        except struct.error as error:
            raise UnsupportedValue(f"f144 cannot carry this update: {error}") from None
