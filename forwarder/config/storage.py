"""The storage topic: the whole current configuration after every change, read back at start.

Each stored snapshot is self-contained. One that fits in a message is one fc00 ADD of every
stream (or a REMOVEALL when nothing is configured), exactly as the ESS forwarder writes it.
A larger one (tens of thousands of streams exceed the broker's default 1 MB limit) is split
into fc00 ADD parts that carry a Kafka header ``forwarder-snapshot: <id> <part>/<parts>``;
only a snapshot whose parts are all present counts, so a write cut short by a crash is
skipped in favour of the newest complete one.

Restoring means finding the newest complete snapshot. An unreachable broker is not an empty
topic: it raises ``StorageUnavailable`` so that the caller retries instead of starting empty
(and later overwriting the stored configuration with whatever it was told next).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.forwarder_config_update_fc00 import StreamInfo, serialise_fc00

from forwarder.config.commands import PROTOCOL_NUMBERS, CommandKind, parse_command
from forwarder.config.streams import StreamSpec
from forwarder.kafka.stream_counts import StreamCounts
from forwarder.sink import Headers, MessageSink

log = logging.getLogger(__name__)

SNAPSHOT_HEADER = "forwarder-snapshot"
# Well under the broker's default message.max.bytes (1 MB), whatever the batch around it.
MAX_SNAPSHOT_MESSAGE_BYTES = 512 * 1024
# fc00 bytes of one stream besides its strings (table entry, vtable, string headers).
_STREAM_OVERHEAD_BYTES = 64
# Read-back windows grow from the end of the topic by this factor until a snapshot is found.
FIRST_WINDOW = 1000
WINDOW_GROWTH = 8


class StorageUnavailable(Exception):
    """The storage topic could not be read now (broker unreachable, read timed out)."""


def serialise_config(specs: Sequence[StreamSpec]) -> bytes:
    """The one fc00 message that restores exactly ``specs``."""
    if not specs:
        return serialise_fc00(UpdateType.REMOVEALL, [])
    streams = [
        StreamInfo(s.channel, s.schema, s.topic, PROTOCOL_NUMBERS[s.protocol], int(s.periodic))
        for s in specs
    ]
    return serialise_fc00(UpdateType.ADD, streams)


def snapshot_messages(
    specs: Sequence[StreamSpec], max_bytes: int = MAX_SNAPSHOT_MESSAGE_BYTES
) -> list[tuple[bytes, Headers | None]]:
    """The storage messages of one snapshot: (value, headers) each, in the order to write."""
    chunks = _chunks(list(specs), max_bytes)
    if len(chunks) == 1:
        return [(serialise_config(chunks[0]), None)]
    snapshot_id = uuid.uuid4().hex
    return [
        (serialise_config(chunk), [(SNAPSHOT_HEADER, f"{snapshot_id} {i}/{len(chunks)}".encode())])
        for i, chunk in enumerate(chunks, start=1)
    ]


def _chunks(specs: list[StreamSpec], max_bytes: int) -> list[list[StreamSpec]]:
    chunks: list[list[StreamSpec]] = [[]]
    size = 0
    for spec in specs:
        cost = _STREAM_OVERHEAD_BYTES + len(spec.channel.encode()) + len(spec.topic.encode())
        cost += len(spec.schema)
        if chunks[-1] and size + cost > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(spec)
        size += cost
    return chunks


def snapshot_marker(headers: Sequence[tuple[str, bytes | None]] | None):
    """(snapshot id, part, parts) of a split snapshot's message; None for a whole one."""
    for key, value in headers or ():
        if key != SNAPSHOT_HEADER or value is None:
            continue
        try:
            snapshot_id, fraction = value.decode().split(" ")
            part, parts = (int(x) for x in fraction.split("/"))
        except (UnicodeDecodeError, ValueError):
            return ("", 0, 0)  # a marker we cannot read: never part of a complete snapshot
        return (snapshot_id, part, parts)
    return None


class ConfigStorage:
    """Writes the current configuration to the storage topic (a ConfigController listener).

    Its writes are counted like a stream's (``counts``: acknowledged, refused, last error),
    so that a storage write the broker refuses shows in status, not only in the log.
    """

    def __init__(self, sink: MessageSink, topic: str):
        self._sink = sink
        self._topic = topic
        self.counts = StreamCounts("(stored configuration)", topic)

    def state(self) -> dict[str, object]:
        """The ``storage`` entry of the status: the topic, messages written and refused, and
        the last refusal (None once a write succeeds again)."""
        counts = self.counts
        return {
            "topic": self._topic,
            "written": counts.forwarded,
            "failed": counts.dropped,
            "error": counts.error,
        }

    def __call__(self, specs: list[StreamSpec]) -> None:
        messages = snapshot_messages(specs)
        now_ms = int(time.time() * 1000)
        for value, headers in messages:
            self._sink.produce(self._topic, None, value, now_ms, stream=self.counts, headers=headers)
        log.debug(
            "Stored configuration of %d streams on %s in %d message(s)",
            len(specs),
            self._topic,
            len(messages),
        )


@dataclass(frozen=True)
class StoredMessage:
    offset: int
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes | None], ...] = field(default=())


class TopicReader(Protocol):
    """Random access to one topic, as much as restoring needs."""

    def partitions(self, timeout: float) -> dict[int, tuple[int, int]] | None:
        """partition -> (low, high) watermarks; None when the topic does not exist.

        Raises StorageUnavailable when the broker cannot say."""

    def read(self, partition: int, start: int, end: int, deadline: float) -> list[StoredMessage]:
        """Messages with start <= offset < end; StorageUnavailable if the monotonic deadline
        passes first."""


@dataclass(frozen=True)
class _Found:
    specs: list[StreamSpec]
    timestamp_ms: int
    offset: int


@dataclass(frozen=True)
class StoredConfig:
    """A restored configuration and the Kafka timestamp of its snapshot (None: no snapshot)."""

    specs: list[StreamSpec]
    timestamp_ms: int | None


def retrieve_config(reader: TopicReader, topic: str, timeout: float) -> list[StreamSpec]:
    """The newest complete configuration on the storage topic; [] if it is absent or holds
    none. Raises StorageUnavailable when that cannot be known now."""
    return retrieve_snapshot(reader, topic, timeout).specs


def retrieve_snapshot(reader: TopicReader, topic: str, timeout: float) -> StoredConfig:
    """``retrieve_config`` with the snapshot's timestamp."""
    started = time.monotonic()
    deadline = started + timeout
    partitions = reader.partitions(timeout)
    if partitions is None:
        log.info("Storage topic %s does not exist: starting with no streams", topic)
        return StoredConfig([], None)
    newest: _Found | None = None
    read = skipped = 0
    for partition, (low, high) in sorted(partitions.items()):
        found, partition_read, partition_skipped = _newest_in_partition(
            reader, partition, low, high, deadline
        )
        read += partition_read
        skipped += partition_skipped
        if found and (newest is None or found.timestamp_ms >= newest.timestamp_ms):
            newest = found
    took = time.monotonic() - started
    if skipped:
        log.warning(
            "Skipped %d message(s) on storage topic %s that hold no stored configuration",
            skipped,
            topic,
        )
    if newest is None:
        log.info(
            "No valid configuration on storage topic %s (%d messages read in %.2fs): "
            "starting with no streams",
            topic,
            read,
            took,
        )
        return StoredConfig([], None)
    log.info(
        "Restoring %d streams from storage topic %s (offset %d; %d messages read in %.2fs)",
        len(newest.specs),
        topic,
        newest.offset,
        read,
        took,
    )
    return StoredConfig(newest.specs, newest.timestamp_ms)


def _newest_in_partition(
    reader: TopicReader, partition: int, low: int, high: int, deadline: float
) -> tuple[_Found | None, int, int]:
    """Read back from the end in growing windows, each read forward in one pass (fast on
    Kafka) and scanned newest first, until a complete snapshot turns up or the partition
    is exhausted. Returns it, the messages read and those that held no snapshot."""
    scan = _SnapshotScan()
    window = FIRST_WINDOW
    end = high
    read = 0
    while end > low:
        start = max(low, end - window)
        messages = reader.read(partition, start, end, deadline)
        read += len(messages)
        found = scan.feed(sorted(messages, key=lambda m: m.offset, reverse=True))
        if found is not None:
            return found, read, scan.skipped
        end = start
        window *= WINDOW_GROWTH
    return None, read, scan.skipped


class _SnapshotScan:
    """Messages fed newest first; finds the newest complete snapshot, whose parts may lie
    across several windows."""

    def __init__(self) -> None:
        self._parts: dict[str, dict[int, tuple[StreamSpec, ...]]] = {}
        self.skipped = 0

    def feed(self, newest_first: list[StoredMessage]) -> _Found | None:
        for message in newest_first:
            command = parse_command(message.value, f"storage message @{message.offset}", quiet=True)
            if command is None or command.kind is CommandKind.REMOVE:
                self.skipped += 1
                continue
            marker = snapshot_marker(message.headers)
            if marker is None:
                return _Found(list(command.specs), message.timestamp_ms, message.offset)
            snapshot_id, part, count = marker
            if command.kind is not CommandKind.ADD or not 1 <= part <= count:
                self.skipped += 1
                continue
            got = self._parts.setdefault(snapshot_id, {})
            got[part] = command.specs
            if len(got) == count:
                specs = [spec for i in range(1, count + 1) for spec in got[i]]
                return _Found(list(dict.fromkeys(specs)), message.timestamp_ms, message.offset)
        return None
