"""fc00 configuration messages: decoding, validation, and applying them to the streams.

Anything can arrive on the config topic. A message that cannot be decoded is logged and
dropped; an invalid stream inside a good message is logged by name and skipped while the
valid streams of that message still apply, and an ADD or REPLACE with no valid stream at all
changes nothing. What is configured keeps running either way.
"""

from __future__ import annotations

import enum
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from streaming_data_types.fbschemas.forwarder_config_update_fc00.Protocol import (
    Protocol as Fc00Protocol,
)
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType

from forwarder.config.fc00_check import read_fc00
from forwarder.config.streams import StreamPattern, StreamSpec
from forwarder.serialise import valid_schemas

log = logging.getLogger(__name__)

SCHEMA_ID = b"fc00"
PROTOCOL_NAMES = {Fc00Protocol.PVA: "PVA", Fc00Protocol.CA: "CA", Fc00Protocol.FAKE: "FAKE"}
PROTOCOL_NUMBERS = {name: number for number, name in PROTOCOL_NAMES.items()}
# What a Kafka broker accepts as a topic name; anything else can never be produced to.
TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


class CommandKind(enum.Enum):
    ADD = UpdateType.ADD
    REMOVE = UpdateType.REMOVE
    REMOVE_ALL = UpdateType.REMOVEALL
    REPLACE = UpdateType.REPLACE


@dataclass(frozen=True)
class Command:
    """A decoded, validated config change: ``specs`` for ADD/REPLACE, ``patterns`` for REMOVE."""

    kind: CommandKind
    specs: tuple[StreamSpec, ...] = ()
    patterns: tuple[StreamPattern, ...] = ()


def describe(stream) -> str:
    """A stream as a log line shows it, whatever fields it has."""
    protocol = getattr(stream, "protocol", "")
    protocol = PROTOCOL_NAMES.get(protocol, protocol)
    return f"channel={stream.channel!r} schema={stream.schema!r} topic={stream.topic!r}" + (
        f" protocol={protocol!s}" if protocol != "" else ""
    )


def parse_command(
    payload: bytes | None, origin: str = "config message", *, quiet: bool = False
) -> Command | None:
    """Decode and validate one fc00 message; None (after logging why) if nothing can apply.

    ``quiet`` logs the reasons at DEBUG, for callers that summarise (the storage read-back).
    """
    warn = log.debug if quiet else log.warning
    if payload is None or len(payload) < 8:
        warn("Ignoring %s: too short to be fc00 (%d bytes)", origin, len(payload or b""))
        return None
    schema_id = bytes(payload[4:8])
    if schema_id != SCHEMA_ID:
        warn("Ignoring %s with schema id %r (expected fc00)", origin, schema_id)
        return None
    try:
        change, streams = read_fc00(payload)
    except Exception as error:  # corrupt FlatBuffers raise anything from struct to unicode
        warn("Ignoring %s: malformed fc00 (%s: %s)", origin, type(error).__name__, error)
        return None
    try:
        kind = CommandKind(change)
    except ValueError:
        warn("Ignoring %s: unknown fc00 update type %r", origin, change)
        return None
    if kind is CommandKind.REMOVE_ALL:
        return Command(kind)
    if kind is CommandKind.REMOVE:
        patterns = tuple(p for p in (_pattern(s, origin, warn) for s in streams) if p is not None)
        if not patterns:
            warn("Ignoring REMOVE %s: no usable stream selector", origin)
            return None
        return Command(kind, patterns=patterns)
    specs = tuple(s for s in (_spec(s, origin, warn) for s in streams) if s is not None)
    if not specs:
        # A REPLACE with nothing valid (say, one typo in a schema) must not clear everything:
        # REMOVEALL is the way to do that on purpose.
        warn("Ignoring %s %s: no valid streams; nothing changed", kind.name, origin)
        return None
    return Command(kind, specs=tuple(dict.fromkeys(specs)))


def is_legal_topic(name: str) -> bool:
    """Whether Kafka would accept ``name`` as a topic name."""
    return TOPIC_NAME.fullmatch(name) is not None and name not in (".", "..")


def _spec(stream, origin: str, warn=log.warning) -> StreamSpec | None:
    protocol = PROTOCOL_NAMES.get(stream.protocol)
    problem = None
    if not stream.channel:
        problem = "empty channel name"
    elif not stream.topic:
        problem = "empty topic"
    elif not is_legal_topic(stream.topic):
        problem = "not a legal Kafka topic name (1-249 of a-z A-Z 0-9 . _ -, not . or ..)"
    elif protocol is None:
        problem = f"unknown protocol {stream.protocol!r}"
    elif stream.schema not in valid_schemas(protocol):
        problem = f"schema {stream.schema!r} is not valid for {protocol}"
    if problem:
        warn("Skipping stream in %s (%s): %s", origin, describe(stream), problem)
        return None
    return StreamSpec(stream.channel, stream.schema, stream.topic, protocol, bool(stream.periodic))


def _pattern(stream, origin: str, warn=log.warning) -> StreamPattern | None:
    pattern = StreamPattern(stream.channel or "", stream.schema or "", stream.topic or "")
    if not (pattern.channel or pattern.schema or pattern.topic):
        warn("Skipping REMOVE selector in %s: channel, schema and topic all empty", origin)
        return None
    return pattern


class Streams(Protocol):
    """What the controller needs of the stream manager."""

    def add(self, spec: StreamSpec) -> bool: ...

    def remove(self, pattern: StreamPattern) -> list[StreamSpec]: ...

    def remove_all(self) -> list[StreamSpec]: ...

    def specs(self) -> list[StreamSpec]: ...


ChangeListener = Callable[[list[StreamSpec]], None]


class ConfigController:
    """Applies commands one at a time and tells listeners (storage, status) the new config.

    Everything runs under one lock, so a REPLACE is atomic for anyone reading ``specs()``,
    and listeners are told in the order the commands were applied.
    """

    def __init__(self, streams: Streams, listeners: Iterable[ChangeListener] = ()):
        self._streams = streams
        self._listeners = list(listeners)
        self._lock = threading.RLock()

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def specs(self) -> list[StreamSpec]:
        with self._lock:
            return list(self._streams.specs())

    def handle_message(self, payload: bytes | None, origin: str = "config message") -> bool:
        """Decode and apply one message; True if it was accepted."""
        command = parse_command(payload, origin)
        return command is not None and self.apply(command)

    def apply(self, command: Command, notify: bool = True) -> bool:
        with self._lock:
            if command.kind in (CommandKind.REMOVE_ALL, CommandKind.REPLACE):
                removed = self._streams.remove_all()
                log.info("%s: removed all %d streams", command.kind.name, len(removed))
            lines = _StreamLines()
            for pattern in command.patterns:
                removed = self._streams.remove(pattern)
                if removed:
                    for spec in removed:
                        lines.say("removed", "Removed stream %s", describe(spec))
                else:
                    log.info("REMOVE matched no stream: %s", describe(pattern))
            for spec in command.specs:
                if self._streams.add(spec):
                    lines.say(
                        "added", "Added stream %s periodic=%s", describe(spec), spec.periodic
                    )
                else:
                    lines.say("already configured", "Stream already configured: %s", describe(spec))
            lines.summarise(command.kind.name)
            if notify:
                current = list(self._streams.specs())
                for listener in self._listeners:
                    try:
                        listener(current)
                    except Exception:
                        log.exception("Failed to report the new configuration")
        return True


class _StreamLines:
    """One INFO line per stream for the first few of a command, then counts: a command of
    100,000 streams would otherwise spend most of its time writing the log."""

    EACH_UP_TO = 100

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def say(self, outcome: str, msg: str, *args: object) -> None:
        count = self._counts[outcome] = self._counts.get(outcome, 0) + 1
        if count <= self.EACH_UP_TO:
            log.info(msg, *args)

    def summarise(self, kind: str) -> None:
        unlisted = {o: n - self.EACH_UP_TO for o, n in self._counts.items() if n > self.EACH_UP_TO}
        if unlisted:
            log.info(
                "%s: %s (the first %d of each listed above)",
                kind,
                ", ".join(f"{n} streams {o}" for o, n in self._counts.items()),
                self.EACH_UP_TO,
            )
