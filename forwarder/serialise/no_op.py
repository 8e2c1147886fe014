"""The no_op schema: a stream that forwards no data, only its al00 alarms and ep01 status."""

from __future__ import annotations

from forwarder.update import Update


class NoOpSerialiser:
    """Returns None for every update, so nothing is sent on the data path."""

    def __init__(self, channel: str) -> None:
        self._channel = channel

    def serialise(self, update: Update) -> None:
        return None
