"""Which configured streams this group member forwards: those of its coordination partitions.

The controller keeps the whole configuration here (every member reads every command); only
the streams whose identity hashes to a partition this member was assigned reach the stream
manager. The hash is crc32 of the stream's identity, so every member, on every Python run,
maps a stream to the same partition (Python's ``hash()`` is salted per process).

Thread-safe: commands arrive on the main thread, assignments on the group member's thread.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Iterable

from forwarder.config.streams import StreamPattern, StreamSpec

log = logging.getLogger(__name__)


def stream_partition(spec: StreamSpec, partitions: int) -> int:
    """The coordination partition that owns ``spec``; the same on every member."""
    identity = "\x00".join(spec.key).encode()
    return zlib.crc32(identity) % partitions


class _Keys:
    """A REMOVE-like selector of exact stream identities, for StreamManager.remove."""

    def __init__(self, keys: Iterable[tuple[str, str, str, str]]):
        self._keys = set(keys)

    def matches(self, spec: StreamSpec) -> bool:
        return spec.key in self._keys


class OwnedStreams:
    """The controller's view (all configured streams) over a manager that runs owned ones."""

    def __init__(self, manager, partitions: int):
        self._manager = manager
        self._partitions = partitions
        self._lock = threading.RLock()
        self._configured: dict[tuple[str, str, str, str], StreamSpec] = {}
        self._owned: set[int] = set()

    @property
    def partitions(self) -> int:
        return self._partitions

    def set_partition_count(self, partitions: int) -> None:
        """The coordination topic's real partition count, known once it is found or made."""
        with self._lock:
            if self._owned and partitions != self._partitions:
                raise RuntimeError("partition count changed while partitions are owned")
            self._partitions = partitions

    # -- the Streams protocol, for the ConfigController ------------------------------------

    def add(self, spec: StreamSpec) -> bool:
        with self._lock:
            existing = self._configured.get(spec.key)
            if existing == spec:
                return False
            self._configured[spec.key] = spec
            if self._owns(spec):
                self._manager.add(spec)
            return True

    def remove(self, pattern: StreamPattern) -> list[StreamSpec]:
        with self._lock:
            removed = [s for s in self._configured.values() if pattern.matches(s)]
            for spec in removed:
                del self._configured[spec.key]
            self._manager.remove(_Keys(s.key for s in removed))
            return removed

    def remove_all(self) -> list[StreamSpec]:
        with self._lock:
            removed = list(self._configured.values())
            self._configured.clear()
            self._manager.remove_all()
            return removed

    def specs(self) -> list[StreamSpec]:
        """The whole configuration (what storage keeps), not only what this member runs."""
        with self._lock:
            return list(self._configured.values())

    # -- the group's assignment ------------------------------------------------------------

    def owned_partitions(self) -> set[int]:
        with self._lock:
            return set(self._owned)

    def assign(self, partitions: Iterable[int]) -> int:
        """Start the configured streams of newly owned ``partitions``; how many started."""
        with self._lock:
            new = set(partitions) - self._owned
            self._owned |= new
            started = 0
            for spec in list(self._configured.values()):
                if stream_partition(spec, self._partitions) in new and self._manager.add(spec):
                    started += 1
            return started

    def revoke(self, partitions: Iterable[int]) -> int:
        """Stop the streams of ``partitions`` this member no longer owns; how many stopped."""
        with self._lock:
            gone = set(partitions) & self._owned
            self._owned -= gone
            stopped = self._manager.remove(
                _Keys(
                    s.key
                    for s in self._configured.values()
                    if stream_partition(s, self._partitions) in gone
                )
            )
            return len(stopped)

    def _owns(self, spec: StreamSpec) -> bool:
        return stream_partition(spec, self._partitions) in self._owned
