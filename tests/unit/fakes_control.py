"""Fakes of the data plane for the control-plane unit tests."""

from __future__ import annotations

from forwarder.config.streams import StreamPattern, StreamSpec


class FakeStreams:
    """Keeps specs like the StreamManager does, and records every call."""

    def __init__(self, specs=()):
        self._specs: dict[tuple, StreamSpec] = {s.key: s for s in specs}
        self.calls: list[tuple] = []
        self.closed = False

    def add(self, spec: StreamSpec) -> bool:
        self.calls.append(("add", spec))
        if self._specs.get(spec.key) == spec:
            return False
        self._specs[spec.key] = spec
        return True

    def remove(self, pattern: StreamPattern) -> list[StreamSpec]:
        self.calls.append(("remove", pattern))
        gone = [s for s in self._specs.values() if pattern.matches(s)]
        for s in gone:
            del self._specs[s.key]
        return gone

    def remove_all(self) -> list[StreamSpec]:
        self.calls.append(("remove_all",))
        gone = list(self._specs.values())
        self._specs.clear()
        return gone

    def specs(self) -> list[StreamSpec]:
        return list(self._specs.values())

    def close(self) -> None:
        self.closed = True


class FakeSink:
    """Records produced messages."""

    def __init__(self):
        self.messages: list[tuple[str, bytes | None, bytes, int]] = []
        self.headers: list[list | None] = []

    def produce(self, topic, key, value, timestamp_ms, stream=None, headers=None):
        self.messages.append((topic, key, value, timestamp_ms))
        self.headers.append(headers)

    def values(self, topic=None):
        return [m[2] for m in self.messages if topic is None or m[0] == topic]
