"""A fast ep01 writer: one struct call for the fixed part, then the strings.

Byte layout (little-endian; offsets from the message start):

    off  size  content
    0    4     u32 offset of the root table (24)
    4    4     file identifier b"ep01"
    8    12    vtable of EpicsPVConnectionInfo, u16 x 6: [vtable size 12, table size 24,
               timestamp at +8, status at +4, source_name at +16,
               service_id at +20, or 0 (absent) when there is no service id]
    20   4     zero padding (the table's int64 must be 8-aligned)
    24   24    table:
                 +0  i32 offset back to the vtable: 24 - 8 = 16
                 +4  i16 status (ep01 ConnectionInfo number), 2 pad bytes
                 +8  i64 timestamp, ns since the Unix epoch
                 +16 u32 offset from this field (40) to the source name (48): 8
                 +20 u32 offset from this field (44) to the service id (S): S - 44;
                     zeros when absent
    48   ...   source name: u32 byte count, UTF-8, NUL, zero padding to 4 bytes
    S    ...   service id, the same way (only when given)
"""

from __future__ import annotations

import struct

from forwarder.serialise.base import UnsupportedValue
from forwarder.serialise.fb_layout import fb_string, utf8
from forwarder.serialise.mappings import ep01_status
from forwarder.update import ConnectionStatus

FILE_IDENTIFIER = b"ep01"
SOURCE_NAME = 48

_FIXED = struct.Struct("<I4s6H4xih2xqII")


class Ep01FastConnectionSerialiser:
    """The connection serialiser of every stream, byte-compatible with the library's reader."""

    def serialise(
        self, channel: str, timestamp_ns: int, status: ConnectionStatus, service_id: str | None
    ) -> bytes:
        number = ep01_status(status).value
        source = fb_string(utf8(channel, "ep01 channel name"))
        if service_id is None:
            service, service_field, service_offset = b"", 0, 0
        else:
            service = fb_string(utf8(service_id, "ep01 service id"))
            service_field, service_offset = 20, SOURCE_NAME + len(source) - 44
        try:
            fixed = _FIXED.pack(
                24, FILE_IDENTIFIER,
                12, 24, 8, 4, 16, service_field,
                24 - 8, number, timestamp_ns,
                SOURCE_NAME - 40, service_offset,
            )  # fmt: skip
        except (struct.error, TypeError) as error:
            raise UnsupportedValue(f"ep01 cannot carry this status: {error}") from None
        return b"".join((fixed, source, service))
