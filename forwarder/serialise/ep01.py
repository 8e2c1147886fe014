"""ep01 connection-status messages.

Every stream sends ep01 when its PV connects, disconnects etc. As a DATA schema, "ep01"
forwards no values at all: its data serialiser returns None and only the connection
messages (sent anyway) reach Kafka. The status mapping lives here; the library-backed
connection serialiser is the reference for the faster one in ep01_fast.py (used by the
registry).
"""

from __future__ import annotations

from streaming_data_types.epics_connection_ep01 import ConnectionInfo, serialise_ep01

from forwarder.serialise.base import UnsupportedValue
from forwarder.serialise.errors import value_errors_as_unsupported
from forwarder.update import ConnectionStatus, Update

EP01_STATUS = {
    ConnectionStatus.NEVER_CONNECTED: ConnectionInfo.NEVER_CONNECTED,
    ConnectionStatus.CONNECTED: ConnectionInfo.CONNECTED,
    ConnectionStatus.DISCONNECTED: ConnectionInfo.DISCONNECTED,
    ConnectionStatus.DESTROYED: ConnectionInfo.DESTROYED,
    ConnectionStatus.UNKNOWN: ConnectionInfo.UNKNOWN,
}


def ep01_status(status: ConnectionStatus) -> ConnectionInfo:
    """The ep01 ConnectionInfo of a connection status; UnsupportedValue for anything else."""
    try:
        return EP01_STATUS[status]
    except (KeyError, TypeError):
        raise UnsupportedValue(f"ep01 has no connection state for {status!r}") from None


class Ep01ConnectionSerialiser:
    """The connection serialiser of every stream (library-backed)."""

    def serialise(
        self, channel: str, timestamp_ns: int, status: ConnectionStatus, service_id: str | None
    ) -> bytes:
        info = ep01_status(status)
        with value_errors_as_unsupported("ep01"):
            return serialise_ep01(timestamp_ns, info, channel, service_id)


class Ep01DataSerialiser:
    """Data schema "ep01": sends no data messages (connection status goes out regardless)."""

    def __init__(self, channel: str) -> None:
        self._channel = channel

    def serialise(self, update: Update) -> None:
        return None
