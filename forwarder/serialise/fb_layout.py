"""Small pieces of the FlatBuffers binary format shared by our hand-laid-out writers.

A FlatBuffers string is a u32 byte count, the UTF-8 bytes and a NUL; whatever follows it
must start 4-aligned, so we pad with zeros. Everything is little-endian.
"""

from __future__ import annotations

import struct

from forwarder.serialise.base import UnsupportedValue

_U32 = struct.Struct("<I")
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by length % 4: zeros up to a multiple of 4


def fb_string(text: bytes) -> bytes:
    """``text`` as a FlatBuffers string, zero-padded to a multiple of 4 bytes."""
    return b"".join((_U32.pack(len(text)), text, b"\0", _PADDING[(len(text) + 1) % 4]))


def utf8(text: str, what: str) -> bytes:
    """``text`` encoded as UTF-8; UnsupportedValue (naming ``what``) if it cannot be."""
    try:
        return text.encode("utf-8")
    except (UnicodeError, AttributeError) as error:
        raise UnsupportedValue(f"{what} is not valid text: {error}") from None
