"""Structural checks of FlatBuffers bytes: what the C++ verifier would insist on.

Python flatbuffers has no verifier and its readers use unaligned struct reads, so a buffer
can read back fine in Python yet be rejected elsewhere. These helpers assert offsets are in
bounds, tables and vtables are well formed, fields and vector elements are aligned to their
size, and strings are NUL-terminated UTF-8.
"""

from __future__ import annotations

import struct


def u32(buf: bytes, pos: int) -> int:
    assert 0 <= pos and pos + 4 <= len(buf), f"u32 at {pos} out of bounds"
    return struct.unpack_from("<I", buf, pos)[0]


def root(buf: bytes, identifier: bytes) -> int:
    """Position of the root table, after checking the file identifier."""
    assert buf[4:8] == identifier, f"identifier {buf[4:8]!r} is not {identifier!r}"
    position = u32(buf, 0)
    assert position < len(buf)
    return position


def table(buf: bytes, pos: int, field_sizes: list[int]) -> list[int | None]:
    """Check a table and its vtable; return each field's absolute position (None = absent)."""
    assert pos % 4 == 0, "table not 4-aligned"
    vtable = pos - struct.unpack_from("<i", buf, pos)[0]
    assert vtable % 2 == 0 and 0 <= vtable and vtable + 4 <= len(buf), "vtable out of bounds"
    vt_size, table_size = struct.unpack_from("<HH", buf, vtable)
    assert vt_size % 2 == 0 and vt_size >= 4 and vtable + vt_size <= len(buf)
    assert table_size >= 4 and pos + table_size <= len(buf), "table out of bounds"
    positions = []
    for index, size in enumerate(field_sizes):
        if 4 + 2 * index >= vt_size:
            positions.append(None)
            continue
        offset = struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0]
        if offset == 0:
            positions.append(None)
            continue
        assert 4 <= offset and offset + size <= table_size, f"field {index} outside its table"
        assert (pos + offset) % size == 0, f"field {index} misaligned"
        positions.append(pos + offset)
    return positions


def follow(buf: bytes, field: int) -> int:
    """Where the uoffset stored at ``field`` points."""
    target = field + u32(buf, field)
    assert target < len(buf), "offset points past the end"
    return target


def vector(buf: bytes, pos: int, element_size: int) -> int:
    """Check a vector's bounds and element alignment; return its length."""
    assert pos % 4 == 0, "vector not 4-aligned"
    count = u32(buf, pos)
    assert (pos + 4) % element_size == 0, "vector elements misaligned"
    assert pos + 4 + count * element_size <= len(buf), "vector out of bounds"
    return count


def string(buf: bytes, field: int) -> str:
    """The string the uoffset at ``field`` points to, checked for NUL and UTF-8."""
    pos = follow(buf, field)
    length = vector(buf, pos, 1)
    assert pos + 4 + length < len(buf) and buf[pos + 4 + length] == 0, "string not NUL-terminated"
    return buf[pos + 4 : pos + 4 + length].decode("utf-8")
