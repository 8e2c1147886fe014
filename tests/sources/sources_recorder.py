"""Records what a source reports, in order, from whatever thread the source calls back on."""

from __future__ import annotations

import threading

from forwarder.update import ConnectionStatus, Update


class Recorder:
    def __init__(self):
        self._lock = threading.Lock()
        self.events: list[tuple[str, object]] = []
        self.callback_threads: set[str] = set()

    def on_update(self, update: Update) -> None:
        with self._lock:
            self.events.append(("update", update))
            self.callback_threads.add(threading.current_thread().name)

    def on_connection(self, status: ConnectionStatus, timestamp_ns: int) -> None:
        assert isinstance(timestamp_ns, int)
        with self._lock:
            self.events.append(("connection", status))
            self.callback_threads.add(threading.current_thread().name)

    def snapshot(self) -> list[tuple[str, object]]:
        with self._lock:
            return list(self.events)

    def updates(self) -> list[Update]:
        return [e for kind, e in self.snapshot() if kind == "update"]

    def statuses(self) -> list[ConnectionStatus]:
        return [e for kind, e in self.snapshot() if kind == "connection"]

    def last_update(self) -> Update | None:
        updates = self.updates()
        return updates[-1] if updates else None

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
