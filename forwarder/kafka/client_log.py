"""What Kafka clients say about themselves, in our log: librdkafka's own lines and the
``error_cb`` errors, tagged with the client's role and throttled per kind, so an unreachable
broker shows at once and then as one counted line per kind every 10 s instead of a flood."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaError

from forwarder.log_throttle import Schedule, ThrottledLog, daemon_timer

log = logging.getLogger("forwarder.kafka")
LIBRDKAFKA_LOG = logging.getLogger("forwarder.librdkafka")

FatalErrorHandler = Callable[[str], None]
SUMMARY_INTERVAL_S = 10.0


class KafkaErrorLogger:
    """An ``error_cb``: each error code at most once per ``repeat_s`` (with a count of the
    rest). A failed authentication (a wrong password never fixes itself) and a client's fatal
    error (after which it produces nothing more) are also passed to ``on_fatal``, so the
    forwarder stops and says why instead of running on uselessly."""

    def __init__(
        self,
        role: str,
        repeat_s: float = SUMMARY_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        on_fatal: FatalErrorHandler | None = None,
        schedule: Schedule = daemon_timer,
    ):
        self._role = role
        self._on_fatal = on_fatal
        self._throttle = ThrottledLog(log, repeat_s, clock, schedule)

    def __call__(self, error: KafkaError) -> None:
        text = str(error)
        code = error.code()
        if code == KafkaError._AUTHENTICATION:
            self._throttle.log(
                code, logging.ERROR, "Kafka authentication failed (%s): %s", self._role, text
            )
            if self._on_fatal is not None:
                self._on_fatal(f"Kafka authentication failed ({self._role}): {text}")
        elif error.fatal():
            log.critical("Fatal Kafka client error (%s): %s", self._role, text)
            if self._on_fatal is not None:
                self._on_fatal(f"fatal Kafka client error ({self._role}): {text}")
        else:
            self._throttle.log(code, logging.ERROR, "Kafka error (%s): %s", self._role, text)


class LibrdkafkaLog:
    """A ``logger`` for confluent-kafka, which calls ``log(level, "%s [%s] %s", facility,
    client name, text)``: lines go to ``forwarder.librdkafka`` prefixed with the role; those
    at WARNING and above are throttled per (level, facility)."""

    def __init__(
        self,
        role: str,
        interval_s: float = SUMMARY_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule = daemon_timer,
    ):
        self._role = role
        self._throttle = ThrottledLog(LIBRDKAFKA_LOG, interval_s, clock, schedule)

    def log(self, level: int, msg: str, *args: object, **_kwargs: object) -> None:
        tagged = "%s: " + msg
        if level < logging.WARNING:
            LIBRDKAFKA_LOG.log(level, tagged, self._role, *args)
            return
        facility = args[0] if args else msg
        self._throttle.log((level, facility), level, tagged, self._role, *args)


def client_logging(role: str, on_fatal: FatalErrorHandler | None = None) -> dict:
    """The confluent-kafka settings that route one client's errors and log lines to us."""
    return {
        "error_cb": KafkaErrorLogger(role, on_fatal=on_fatal),
        "logger": LibrdkafkaLog(role),
    }
