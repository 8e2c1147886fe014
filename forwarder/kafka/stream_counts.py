"""What the producer knows about one stream's messages: forwarded, dropped, last error.

A stream owns one ``StreamCounts`` and hands it to every ``Producer.produce`` call; the
producer updates it when Kafka acknowledges or refuses a message, or when the buffer budget
forces a drop. The status reporter reads it, so each stream's losses are visible by name.
"""

from __future__ import annotations


class StreamCounts:
    """Per-stream delivery counters; written by the producer under its lock, read anywhere."""

    __slots__ = ("channel", "topic", "forwarded", "dropped", "error", "newest", "on_delivery")

    def __init__(self, channel: str, topic: str) -> None:
        self.channel = channel
        self.topic = topic
        self.forwarded = 0  # acknowledged by Kafka
        self.dropped = 0  # over budget, refused by Kafka, or produced after close
        self.error: str | None = None  # the last permanent delivery error, until a success
        self.newest: object = None  # the producer's newest pending overflow entry
        self.on_delivery = None  # the producer's delivery callback bound to this stream
