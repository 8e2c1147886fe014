"""The storage topic: the whole current configuration after every change, read back at start.

Each stored message is self-contained (one fc00 ADD of every stream, or a REMOVEALL when
nothing is configured), so restoring means finding the newest message that decodes and
applying it. Junk in the topic is skipped, and a missing or empty topic means an empty start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.forwarder_config_update_fc00 import StreamInfo, serialise_fc00

from forwarder.config.commands import PROTOCOL_NUMBERS, CommandKind, parse_command
from forwarder.config.streams import StreamSpec

log = logging.getLogger(__name__)

WALK_BACK_BATCH = 20


def serialise_config(specs: Sequence[StreamSpec]) -> bytes:
    """The fc00 message that restores exactly ``specs``."""
    if not specs:
        return serialise_fc00(UpdateType.REMOVEALL, [])
    streams = [
        StreamInfo(s.channel, s.schema, s.topic, PROTOCOL_NUMBERS[s.protocol], int(s.periodic))
        for s in specs
    ]
    return serialise_fc00(UpdateType.ADD, streams)


class MessageSink(Protocol):
    def produce(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int) -> None: ...


class ConfigStorage:
    """Writes the current configuration to the storage topic (a ConfigController listener)."""

    def __init__(self, sink: MessageSink, topic: str):
        self._sink = sink
        self._topic = topic

    def __call__(self, specs: list[StreamSpec]) -> None:
        self._sink.produce(self._topic, None, serialise_config(specs), int(time.time() * 1000))
        log.debug("Stored configuration of %d streams on %s", len(specs), self._topic)


@dataclass(frozen=True)
class StoredMessage:
    offset: int
    value: bytes | None
    timestamp_ms: int


class TopicReader(Protocol):
    """Random access to one topic, as much as the walk-back needs."""

    def partitions(self, timeout: float) -> dict[int, tuple[int, int]] | None:
        """partition -> (low, high) watermark offsets; None when the topic does not exist."""

    def read(self, partition: int, start: int, end: int, deadline: float) -> list[StoredMessage]:
        """Messages with start <= offset < end (fewer if the monotonic deadline passes)."""


@dataclass(frozen=True)
class _Found:
    specs: list[StreamSpec]
    timestamp_ms: int
    offset: int


def retrieve_config(reader: TopicReader, topic: str, timeout: float) -> list[StreamSpec]:
    """The newest valid configuration on the storage topic; [] (logged) if there is none."""
    deadline = time.monotonic() + timeout
    partitions = reader.partitions(timeout)
    if partitions is None:
        log.info("Storage topic %s does not exist: starting with no streams", topic)
        return []
    newest: _Found | None = None
    for partition, (low, high) in sorted(partitions.items()):
        found = _newest_valid(reader, topic, partition, low, high, deadline)
        if found and (newest is None or found.timestamp_ms >= newest.timestamp_ms):
            newest = found
    if newest is None:
        if time.monotonic() >= deadline:
            log.warning("Gave up reading storage topic %s after %.0fs", topic, timeout)
        log.info("No valid configuration on storage topic %s: starting with no streams", topic)
        return []
    log.info(
        "Restoring %d streams from storage topic %s (offset %d)",
        len(newest.specs),
        topic,
        newest.offset,
    )
    return newest.specs


def _newest_valid(
    reader: TopicReader, topic: str, partition: int, low: int, high: int, deadline: float
) -> _Found | None:
    end = high
    while end > low and time.monotonic() < deadline:
        start = max(low, end - WALK_BACK_BATCH)
        messages = reader.read(partition, start, end, deadline)
        for message in sorted(messages, key=lambda m: m.offset, reverse=True):
            origin = f"storage message {topic}[{partition}]@{message.offset}"
            command = parse_command(message.value, origin)
            if command is None:
                log.warning("Skipped %s", origin)
                continue
            if command.kind is CommandKind.REMOVE:
                log.warning("Skipped %s: a REMOVE is not a stored configuration", origin)
                continue
            return _Found(list(command.specs), message.timestamp_ms, message.offset)
        end = start
    return None
