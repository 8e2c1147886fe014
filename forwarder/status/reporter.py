"""x5f2 status messages: who this forwarder is and which streams it forwards.

Sent every ``interval_s`` and right after each accepted command, so tools (and the tests)
can see a configuration change take effect without waiting for the next period.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from streaming_data_types.status_x5f2 import serialise_x5f2

import forwarder
from forwarder.config.streams import StreamSpec

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 4.0


class MessageSink(Protocol):
    def produce(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int) -> None: ...


StreamState = Callable[[StreamSpec], Mapping[str, object]]


def status_json(specs: Sequence[StreamSpec], stream_state: StreamState | None = None) -> str:
    """The status_json field: every configured stream, in a stable order.

    Each entry has the ESS keys first; ``stream_state`` adds what this forwarder knows of the
    stream (connection, last update, forwarded, dropped, error) as extra keys, so consumers
    that read only the ESS keys keep working.
    """
    streams = []
    for s in sorted(specs, key=lambda s: s.key):
        entry = {
            "channel_name": s.channel,
            "protocol": s.protocol,
            "output_topic": s.topic,
            "schema": s.schema,
        }
        if stream_state is not None:
            entry.update(stream_state(s))
        streams.append(entry)
    return json.dumps({"streams": streams})


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

    def message(self, specs: Sequence[StreamSpec]) -> bytes:
        return serialise_x5f2(
            "forwarder",
            forwarder.__version__,
            self._service_id,
            self._host_name,
            self._process_id,
            int(self._interval_s * 1000),
            status_json(specs, self._stream_state),
        )

    def send(self, specs: Sequence[StreamSpec] | None = None) -> None:
        """Send now (with ``specs`` if given, else the current ones) and restart the period."""
        if specs is None:
            specs = self._current_specs()
        self._sink.produce(self._topic, None, self.message(specs), int(time.time() * 1000))
        self._next_due = self._clock() + self._interval_s
        log.debug("Sent status with %d streams to %s", len(specs), self._topic)

    def __call__(self, specs: list[StreamSpec]) -> None:
        self.send(specs)

    def tick(self) -> bool:
        """Send if the period has passed (or nothing was sent yet); True if sent."""
        if self._next_due is not None and self._clock() < self._next_due:
            return False
        self.send()
        return True
