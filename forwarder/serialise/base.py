"""The contract between updates and FlatBuffers payloads."""

from __future__ import annotations

from typing import Protocol

from forwarder.update import Alarm, ConnectionStatus, Update


class UnsupportedValue(ValueError):
    """The schema cannot carry this value (e.g. a string for f144); the stream logs it once."""


class UnknownSchema(ValueError):
    """No serialiser exists for the schema named in a config message."""


class DataSerialiser(Protocol):
    """Turns updates of one stream (one channel, one schema) into payloads.

    Made once per stream, so that per-stream work (the channel name, the schema choice) is
    done once and not per update. ``serialise`` returns None when the schema sends nothing
    for this update (no_op, or an empty tdct), and raises UnsupportedValue when the value
    does not fit the schema.
    """

    def serialise(self, update: Update) -> bytes | None: ...


class AlarmSerialiser(Protocol):
    def serialise(self, channel: str, timestamp_ns: int, alarm: Alarm) -> bytes: ...


class ConnectionSerialiser(Protocol):
    def serialise(
        self, channel: str, timestamp_ns: int, status: ConnectionStatus, service_id: str | None
    ) -> bytes: ...
