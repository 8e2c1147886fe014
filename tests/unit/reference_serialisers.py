"""Library-backed serialisers: ess-streaming-data-types' own writers behind our interfaces.

The forwarder sends with its own writers (forwarder/serialise/); these exist only so the
tests can check our bytes against the library's output through the same calls.
"""

from __future__ import annotations

from streaming_data_types import serialise_f144
from streaming_data_types.alarm_al00 import serialise_al00
from streaming_data_types.epics_connection_ep01 import serialise_ep01

from forwarder.serialise.errors import value_errors_as_unsupported
from forwarder.serialise.mappings import al00_severity, ep01_status
from forwarder.serialise.numeric import as_numeric
from forwarder.update import Alarm, ConnectionStatus, Update


class F144Serialiser:
    """One stream's updates as f144 via the library's serialise_f144."""

    def __init__(self, channel: str) -> None:
        self._channel = channel

    def serialise(self, update: Update) -> bytes:
        value = as_numeric(update.value, "f144")
        with value_errors_as_unsupported("f144"):
            return serialise_f144(self._channel, value, update.timestamp_ns)


class Al00AlarmSerialiser:
    """A stream's alarms as al00 via the library's serialise_al00."""

    def serialise(self, channel: str, timestamp_ns: int, alarm: Alarm) -> bytes:
        severity = al00_severity(alarm.severity)
        with value_errors_as_unsupported("al00"):
            return serialise_al00(channel, timestamp_ns, severity, alarm.message)


class Al00DataSerialiser:
    """Data schema "al00": each update becomes the al00 of its alarm; the value is ignored."""

    def __init__(self, channel: str, alarms: Al00AlarmSerialiser | None = None) -> None:
        self._channel = channel
        self._alarms = alarms or Al00AlarmSerialiser()

    def serialise(self, update: Update) -> bytes:
        return self._alarms.serialise(self._channel, update.timestamp_ns, update.alarm)


class Ep01ConnectionSerialiser:
    """A stream's connection status as ep01 via the library's serialise_ep01."""

    def serialise(
        self, channel: str, timestamp_ns: int, status: ConnectionStatus, service_id: str | None
    ) -> bytes:
        info = ep01_status(status)
        with value_errors_as_unsupported("ep01"):
            return serialise_ep01(timestamp_ns, info, channel, service_id)
