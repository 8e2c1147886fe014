"""What one configured stream is, and how REMOVE patterns select streams."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


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
        if self.channel and not fnmatchcase(spec.channel, self.channel):
            return False
        if self.topic and not fnmatchcase(spec.topic, self.topic):
            return False
        if self.schema and spec.schema != self.schema:
            return False
        return True
