"""Gatekeeper between a library's callback threads and one source's callbacks.

Libraries (libca, p4p, the fake timer) may still be running a callback while ``stop`` is
called. Every callback goes through ``deliver_*`` under a per-source lock that ``close``
also takes, so once ``close`` returns no callback of that source runs or will run.
Exceptions from the pipeline's callbacks are logged here and never reach the library.
"""

from __future__ import annotations

import logging
import threading
import time

from forwarder.sources.base import ConnectionCallback, UpdateCallback
from forwarder.update import ConnectionStatus, Update

log = logging.getLogger(__name__)


class Delivery:
    """Forwards updates and connection changes of one source until closed."""

    def __init__(self, channel: str, on_update: UpdateCallback, on_connection: ConnectionCallback):
        self.channel = channel
        self._on_update = on_update
        self._on_connection = on_connection
        # Re-entrant: a pipeline callback may stop its own source.
        self._lock = threading.RLock()
        self._closed = False
        self._conversion_failed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def deliver_update(self, update: Update) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._on_update(update)
            except Exception:
                log.exception("update callback failed for %s", self.channel)

    def deliver_connection(self, status: ConnectionStatus, timestamp_ns: int | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._on_connection(
                    status, time.time_ns() if timestamp_ns is None else timestamp_ns
                )
            except Exception:
                log.exception("connection callback failed for %s", self.channel)

    def conversion_failed(self, error: Exception) -> None:
        """Logs a value that cannot be converted: an error once per source, then debug only."""
        level = logging.DEBUG if self._conversion_failed else logging.ERROR
        self._conversion_failed = True
        log.log(level, "dropping update of %s: cannot convert it (%s)", self.channel, error)

    def close(self) -> None:
        """Waits for a running callback to finish; none runs afterwards."""
        with self._lock:
            self._closed = True
