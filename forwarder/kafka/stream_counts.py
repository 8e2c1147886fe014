"""What the producer knows about one stream's messages: forwarded, dropped, last error.

A stream owns one ``StreamCounts`` and hands it to every ``Producer.produce`` call; the
producer updates it when Kafka acknowledges or refuses a message, or when the buffer budget
forces a drop. The status reporter reads it, so each stream's losses are visible by name.
"""

from __future__ import annotations

import collections


class StreamCounts:
    """Per-stream delivery counters; written by the producer under its lock, read anywhere."""

    __slots__ = (
        "channel",
        "topic",
        "forwarded",
        "dropped",
        "error",
        "newest",
        "on_delivery",
        "held_timestamps",
        "reported",
        "progress_mark",
        "progress_at",
        "__weakref__",
    )

    def __init__(self, channel: str, topic: str) -> None:
        self.channel = channel
        self.topic = topic
        self.forwarded = 0  # acknowledged by Kafka
        self.dropped = 0  # over budget, refused by Kafka, or produced after close
        self.error: str | None = None  # the last permanent delivery error, until a success
        self.newest: object = None  # the producer's newest pending overflow entry
        self.on_delivery = None  # the producer's delivery callback bound to this stream
        # Kafka timestamps of the messages in librdkafka, oldest first (its delivery reports
        # come in that order): a purged message's report carries none, and it must be sent
        # again with its own. Their count is what librdkafka holds of this stream.
        self.held_timestamps: collections.deque[int] = collections.deque()
        # The stall watch: delivery reports so far, and when it last saw them move (or saw
        # nothing held).
        self.reported = 0
        self.progress_mark = 0
        self.progress_at = 0.0
