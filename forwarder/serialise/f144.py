"""f144 log data through the ess-streaming-data-types library (the reference writer).

The registry uses the fast writer in f144_fast.py for real streams; this one stays as the
reference the fast writer is tested and benchmarked against.
"""

from __future__ import annotations

from streaming_data_types import serialise_f144

from forwarder.serialise.errors import value_errors_as_unsupported
from forwarder.serialise.numeric import as_numeric
from forwarder.update import Update


class F144Serialiser:
    """One stream's updates as f144 via the library's serialise_f144."""

    def __init__(self, channel: str) -> None:
        self._channel = channel

    def serialise(self, update: Update) -> bytes:
        value = as_numeric(update.value, "f144")
        with value_errors_as_unsupported("f144"):
            return serialise_f144(self._channel, value, update.timestamp_ns)
