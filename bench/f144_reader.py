"""Just enough of an f144 reader for the benchmark consumer: name, timestamp, counter value.

The consumer checks tens of thousands of messages a second, so it reads the three fields it
needs straight from the FlatBuffers bytes instead of building the generated objects.
Layout (f144_LogData): vtable slots 4 source_name, 6 timestamp (int64 ns), 8 value_type,
10 value (a table whose slot 4 is the scalar, or the vector of an array type).
"""

from __future__ import annotations

import struct

_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U16 = struct.Struct("<H").unpack_from
_I64 = struct.Struct("<q").unpack_from

# value_type -> (struct format of one element, is_array)
_SCALARS = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "q", 8: "Q", 9: "f", 10: "d"}
_ELEMENT = {k: struct.Struct("<" + v) for k, v in _SCALARS.items()}
_ARRAY_BASE = 10  # ArrayByte = 11 ... ArrayDouble = 20


def _field(buf: bytes, table: int, slot: int) -> int:
    """Absolute position of a table field, or 0 if absent."""
    vtable = table - _I32(buf, table)[0]
    if slot >= _U16(buf, vtable)[0]:
        return 0
    rel = _U16(buf, vtable + slot)[0]
    return table + rel if rel else 0


def read_name_and_time(buf: bytes) -> tuple[bytes, int]:
    """(source name bytes, timestamp ns) of an f144 message."""
    table = _U32(buf, 0)[0]
    pos = _field(buf, table, 4)
    pos += _U32(buf, pos)[0]
    name = buf[pos + 4 : pos + 4 + _U32(buf, pos)[0]]
    ts_pos = _field(buf, table, 6)
    return name, (_I64(buf, ts_pos)[0] if ts_pos else 0)


def read_counter(buf: bytes) -> tuple[bytes, int, float]:
    """(name, timestamp ns, value); for an array, its largest element (the newest sample of
    the benchmark IOC's circular buffers)."""
    name, ts = read_name_and_time(buf)
    table = _U32(buf, 0)[0]
    vtype = buf[_field(buf, table, 8)]
    pos = _field(buf, table, 10)
    value_table = pos + _U32(buf, pos)[0]
    vpos = _field(buf, value_table, 4)
    if not vpos:
        return name, ts, 0.0
    if vtype <= _ARRAY_BASE:
        return name, ts, float(_ELEMENT[vtype].unpack_from(buf, vpos)[0])
    element = _ELEMENT[vtype - _ARRAY_BASE]
    vec = vpos + _U32(buf, vpos)[0]
    count = _U32(buf, vec)[0]
    if count == 0:
        return name, ts, 0.0
    values = struct.unpack_from(f"<{count}{element.format[1:]}", buf, vec + 4)
    return name, ts, float(max(values))
