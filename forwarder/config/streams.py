"""What one configured stream is, and how REMOVE patterns select streams."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@lru_cache(maxsize=1024)
def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    """Only ``*`` (any run) and ``?`` (one character) are special; ``[`` is literal, unlike
    fnmatch, because EPICS PV names may contain brackets."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def wildcard_match(text: str, pattern: str) -> bool:
    """Case-sensitive whole-string match of ``text`` against a ``*``/``?`` pattern."""
    return _wildcard_regex(pattern).fullmatch(text) is not None


@dataclass(frozen=True)
class StreamSpec:
    """One stream from an fc00 ADD: a PV, the schema to send it as, and where.

    Two specs that are equal are the same stream (an identical ADD is a no-op); the same PV
    with another topic or schema is an independent stream.
    """

    channel: str
    schema: str
    topic: str
    protocol: str  # "CA", "PVA" or "FAKE"
    periodic: bool = False

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Identity of the stream; ``periodic`` is a setting of it, not part of its identity."""
        return (self.channel, self.schema, self.topic, self.protocol)


@dataclass(frozen=True)
class StreamPattern:
    """A REMOVE selector: empty fields match anything.

    ``channel`` and ``topic`` take shell-style ``*`` and ``?`` wildcards; ``schema`` must
    match exactly.
    """

    channel: str = ""
    schema: str = ""
    topic: str = ""

    def matches(self, spec: StreamSpec) -> bool:
        if self.channel and not wildcard_match(spec.channel, self.channel):
            return False
        if self.topic and not wildcard_match(spec.topic, self.topic):
            return False
        if self.schema and spec.schema != self.schema:
            return False
        return True
