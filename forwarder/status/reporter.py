"""x5f2 status messages: who this forwarder is and which streams it forwards.

Sent every ``interval_s`` and right after each accepted command, so tools (and the tests)
can see a configuration change take effect without waiting for the next period.

A status that would not fit in one Kafka message (tens of thousands of streams exceed the
broker's default 1 MB) is split into several x5f2 messages, each a valid status with part of
the ``streams`` list and ``"part": {"index": i, "count": n, "cycle": c}``; the union of the
parts of one cycle is the whole list. A status that fits is one message without ``part``,
exactly as before.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from streaming_data_types.status_x5f2 import serialise_x5f2

import forwarder
from forwarder.config.streams import StreamSpec
from forwarder.sink import MessageSink

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 4.0
# Well under the broker's default message.max.bytes (1 MB).
MAX_STATUS_JSON_BYTES = 512 * 1024


StreamState = Callable[[StreamSpec], Mapping[str, object]]


def _stream_entries(
    specs: Sequence[StreamSpec], stream_state: StreamState | None = None
) -> list[dict]:
    """Every configured stream, in a stable order: the ESS keys first, then what this
    forwarder knows of the stream (connection, last update, forwarded, dropped, error) as
    extra keys, so consumers that read only the ESS keys keep working."""
    entries = []
    for s in sorted(specs, key=lambda s: s.key):
        entry = {
            "channel_name": s.channel,
            "protocol": s.protocol,
            "output_topic": s.topic,
            "schema": s.schema,
        }
        if stream_state is not None:
            entry.update(stream_state(s))
        entries.append(entry)
    return entries


def status_json(specs: Sequence[StreamSpec], stream_state: StreamState | None = None) -> str:
    """The status_json field as one string, however large."""
    return json.dumps({"streams": _stream_entries(specs, stream_state)})


def status_json_parts(
    entries: Sequence[dict],
    cycle: int,
    max_bytes: int = MAX_STATUS_JSON_BYTES,
    extra: Mapping[str, object] | None = None,
) -> list[str]:
    """status_json of one status: one string if it fits in ``max_bytes``, else parts.
    ``extra`` are top-level keys every part carries (e.g. the storage topic's health)."""
    encoded = [json.dumps(entry) for entry in entries]
    tail = ", " + json.dumps(dict(extra))[1:-1] if extra else ""
    if sum(len(e) + 2 for e in encoded) + 16 + len(tail) <= max_bytes:
        return ['{"streams": [' + ", ".join(encoded) + "]" + tail + "}"]
    chunks: list[list[str]] = [[]]
    size = 0
    for entry in encoded:
        if chunks[-1] and size + len(entry) + 2 > max_bytes - 128 - len(tail):
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += len(entry) + 2
    count = len(chunks)
    return [
        '{"streams": ['
        + ", ".join(chunk)
        + f'], "part": {{"index": {i}, "count": {count}, "cycle": {cycle}}}'
        + tail
        + "}"
        for i, chunk in enumerate(chunks, start=1)
    ]


class StatusReporter:
    """Produces x5f2 on the status topic; ``tick`` in the main loop, ``__call__`` on change."""

    def __init__(
        self,
        sink: MessageSink,
        topic: str,
        service_id: str,
        current_specs: Callable[[], list[StreamSpec]],
        *,
        interval_s: float = STATUS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        host_name: str | None = None,
        process_id: int | None = None,
        stream_state: StreamState | None = None,
        extra: Callable[[], Mapping[str, object]] | None = None,
    ):
        self._sink = sink
        self._topic = topic
        self._service_id = service_id
        self._current_specs = current_specs
        self._interval_s = interval_s
        self._clock = clock
        self._host_name = host_name if host_name is not None else socket.gethostname()
        self._process_id = process_id if process_id is not None else os.getpid()
        self._next_due: float | None = None
        self._stream_state = stream_state
        self._cycle = 0
        # More top-level status_json keys (a group member's identity, the storage topic's
        # health), in every part of a split status.
        self._extra = extra

    def message(self, specs: Sequence[StreamSpec]) -> bytes:
        """The status as one message (however large)."""
        entries = _stream_entries(specs, self._stream_state)
        extra = self._extra() if self._extra is not None else None
        (whole,) = status_json_parts(entries, self._cycle, max_bytes=sys.maxsize, extra=extra)
        return self._x5f2(whole)

    def messages(self, specs: Sequence[StreamSpec]) -> list[bytes]:
        """The status as messages that each fit the broker's default limit."""
        self._cycle += 1
        entries = _stream_entries(specs, self._stream_state)
        extra = self._extra() if self._extra is not None else None
        parts = status_json_parts(entries, self._cycle, extra=extra)
        return [self._x5f2(part) for part in parts]

    def _x5f2(self, json_text: str) -> bytes:
        return serialise_x5f2(
            "forwarder",
            forwarder.__version__,
            self._service_id,
            self._host_name,
            self._process_id,
            int(self._interval_s * 1000),
            json_text,
        )

    def send(self, specs: Sequence[StreamSpec] | None = None) -> None:
        """Send now (with ``specs`` if given, else the current ones) and restart the period."""
        if specs is None:
            specs = self._current_specs()
        now_ms = int(time.time() * 1000)
        messages = self.messages(specs)
        for message in messages:
            self._sink.produce(self._topic, None, message, now_ms)
        self._next_due = self._clock() + self._interval_s
        log.debug(
            "Sent status with %d streams to %s in %d message(s)",
            len(specs),
            self._topic,
            len(messages),
        )

    def __call__(self, specs: list[StreamSpec]) -> None:
        self.send(specs)

    def tick(self) -> bool:
        """Send if the period has passed (or nothing was sent yet); True if sent."""
        if self._next_due is not None and self._clock() < self._next_due:
            return False
        self.send()
        return True
