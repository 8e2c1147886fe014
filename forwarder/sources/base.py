"""The contract every EPICS source (CA, PVA, fake) keeps with the rest of the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from forwarder.update import ConnectionStatus, Update

# Called from the source's own thread (libca, p4p or a timer). Must be cheap and thread-safe.
UpdateCallback = Callable[[Update], None]
# (status, timestamp_ns): the wall-clock time the status was observed.
ConnectionCallback = Callable[[ConnectionStatus, int], None]


class Source(Protocol):
    """A subscription to one PV.

    ``start`` returns at once (never blocks on the network); the source then calls
    ``on_connection`` on each connection change and ``on_update`` for every value, beginning
    with the current value on (re)connect. A PV that does not exist yet must start
    forwarding when it appears. ``stop`` unsubscribes and returns promptly; no callback runs
    after it returns.
    """

    def start(self) -> None: ...

    def stop(self) -> None: ...


class SourceFactory(Protocol):
    """Makes sources for one protocol, sharing one client context between them."""

    def create(
        self, channel: str, on_update: UpdateCallback, on_connection: ConnectionCallback
    ) -> Source: ...

    def close(self) -> None: ...
