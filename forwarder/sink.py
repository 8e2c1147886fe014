"""Where control messages (status, stored configuration) are written: the one ``MessageSink``.

Defined apart from its users (config.storage, status.reporter) and from the Kafka producer
that implements it, so both can name it without importing each other or confluent_kafka.
"""

from __future__ import annotations

from typing import Protocol

Headers = list[tuple[str, bytes]]


class MessageSink(Protocol):
    """Something that takes Kafka messages, e.g. ``forwarder.kafka.producer.Producer``."""

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        stream=None,
        headers: Headers | None = None,
    ) -> None: ...
