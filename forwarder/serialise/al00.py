"""A fast al00 writer: one struct call for the fixed part, then the two strings.

Byte layout (little-endian; offsets from the message start):

    off  size  content
    0    4     u32 offset of the root table (24)
    4    4     file identifier b"al00"
    8    12    vtable of Alarm, u16 x 6: [vtable size 12, table size 24,
               source_name at +4, timestamp at +8, severity at +16, message at +20]
    20   4     zero padding (the table's int64 must be 8-aligned)
    24   24    Alarm table:
                 +0  i32 offset back to the vtable: 24 - 8 = 16
                 +4  u32 offset from this field (28) to the source name (48): 20
                 +8  i64 timestamp, ns since the Unix epoch
                 +16 i16 severity (al00 Severity: OK 0, MINOR 1, MAJOR 2, INVALID 3), 2 pad
                 +20 u32 offset from this field (44) to the message (M): M - 44
    48   ...   source name: u32 byte count, UTF-8, NUL, zero padding to 4 bytes
    M    ...   message, the same way
"""

from __future__ import annotations

import struct

from forwarder.serialise.base import UnsupportedValue
from forwarder.serialise.fb_layout import fb_string, utf8
from forwarder.serialise.mappings import al00_severity
from forwarder.update import Alarm, Update

FILE_IDENTIFIER = b"al00"
SOURCE_NAME = 48

_FIXED = struct.Struct("<I4s6H4xiIqh2xI")
_CACHE_LIMIT = 4096  # distinct channel names / messages kept encoded


def pack_al00(source: bytes, timestamp_ns: int, severity: int, message: bytes) -> bytes:
    """An al00 message from the FlatBuffers strings ``source`` and ``message`` (fb_string)."""
    fixed = _FIXED.pack(
        24, FILE_IDENTIFIER,
        12, 24, 4, 8, 16, 20,
        24 - 8, SOURCE_NAME - 28,
        timestamp_ns, severity,
        SOURCE_NAME + len(source) - 44,
    )  # fmt: skip
    return b"".join((fixed, source, message))


class _Encoded(dict):
    """str -> its fb_string, forgetting everything when it grows past _CACHE_LIMIT."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self._what = what

    def __missing__(self, text: str) -> bytes:
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        encoded = self[text] = fb_string(utf8(text, self._what))
        return encoded


class Al00FastAlarmSerialiser:
    """The alarm serialiser of every stream, byte-compatible with the library's reader."""

    def __init__(self) -> None:
        self._channels = _Encoded("al00 channel name")
        self._messages = _Encoded("al00 alarm message")

    def serialise(self, channel: str, timestamp_ns: int, alarm: Alarm) -> bytes:
        severity = al00_severity(alarm.severity).value
        try:
            return pack_al00(
                self._channels[channel], timestamp_ns, severity, self._messages[alarm.message]
            )
        except (struct.error, TypeError) as error:
            raise UnsupportedValue(f"al00 cannot carry this alarm: {error}") from None


class Al00FastDataSerialiser:
    """Data schema "al00": the data message is the al00 of the update's alarm.

    The same writer as every stream's alarms, called with this stream's channel.
    """

    def __init__(self, channel: str, alarms: Al00FastAlarmSerialiser | None = None) -> None:
        self._channel = channel
        self._alarms = alarms or Al00FastAlarmSerialiser()

    def serialise(self, update: Update) -> bytes:
        return self._alarms.serialise(self._channel, update.timestamp_ns, update.alarm)
