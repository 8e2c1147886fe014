import logging

import pytest
from confluent_kafka import KafkaError

from forwarder.kafka.client_log import KafkaErrorLogger, LibrdkafkaLog, client_logging
from forwarder.log_throttle import RateLimitedLog, ThrottledLog


class FakeTime:
    """A clock and a timer queue: ``advance`` runs the timers that fall due, in order."""

    def __init__(self):
        self.now = 0.0
        self.timers: list[tuple[float, object]] = []

    def clock(self) -> float:
        return self.now

    def schedule(self, delay_s, action) -> None:
        self.timers.append((self.now + delay_s, action))

    def advance(self, to: float) -> None:
        while True:
            due = sorted((t for t in self.timers if t[0] <= to), key=lambda t: t[0])
            if not due:
                break
            at, action = due[0]
            self.timers.remove(due[0])
            self.now = at
            action()
        self.now = to


@pytest.fixture
def fake_time():
    return FakeTime()


def lines(caplog, name):
    return [r.getMessage() for r in caplog.records if r.name == name]


def throttle(fake_time, name="throttle"):
    return ThrottledLog(logging.getLogger(name), 10.0, fake_time.clock, fake_time.schedule)


def test_first_line_of_a_kind_is_logged_at_once(fake_time, caplog):
    log = throttle(fake_time)
    log.log("k", logging.ERROR, "broker %s down", "b1")
    assert lines(caplog, "throttle") == ["broker b1 down"]


def test_a_flood_gives_one_counted_line_per_kind_every_interval(fake_time, caplog):
    log = throttle(fake_time)
    for i in range(250):  # 25 s at 10 per second
        fake_time.advance(i / 10)
        log.log("k", logging.ERROR, "attempt %d failed", i)
    fake_time.advance(40)
    assert lines(caplog, "throttle") == [
        "attempt 0 failed",
        "attempt 99 failed (98 more in the last 10 s)",
        "attempt 199 failed (99 more in the last 10 s)",
        "attempt 249 failed (49 more in the last 10 s)",
    ]


def test_every_occurrence_is_counted_even_when_the_fault_stops(fake_time, caplog):
    log = throttle(fake_time)
    for _ in range(5):
        log.log("k", logging.WARNING, "lost")
    assert lines(caplog, "throttle") == ["lost"]
    fake_time.advance(10)
    assert lines(caplog, "throttle") == ["lost", "lost (3 more in the last 10 s)"]
    fake_time.advance(100)
    assert len(caplog.records) == 2


def test_kinds_are_throttled_independently_and_keep_their_level(fake_time, caplog):
    log = throttle(fake_time)
    for _ in range(3):
        log.log("a", logging.ERROR, "a")
        log.log("b", logging.WARNING, "b")
    fake_time.advance(10)
    got = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert got == [
        ("ERROR", "a"),
        ("WARNING", "b"),
        ("ERROR", "a (1 more in the last 10 s)"),
        ("WARNING", "b (1 more in the last 10 s)"),
    ]


def test_a_quiet_kind_logs_again_at_once(fake_time, caplog):
    log = throttle(fake_time)
    log.log("k", logging.ERROR, "first")
    fake_time.advance(30)
    log.log("k", logging.ERROR, "again")
    assert lines(caplog, "throttle") == ["first", "again"]


def test_flush_writes_pending_counts_now(fake_time, caplog):
    log = throttle(fake_time)
    for _ in range(3):
        log.log("k", logging.ERROR, "x")
    log.flush()
    fake_time.advance(20)  # the timer that was due finds nothing left
    assert lines(caplog, "throttle") == ["x", "x (1 more in the last 10 s)"]


def test_a_late_timer_never_gives_a_second_line_in_one_interval(fake_time, caplog):
    log = throttle(fake_time)
    log.log("k", logging.ERROR, "x")
    log.log("k", logging.ERROR, "x")  # schedules the summary for t=10
    fake_time.timers.clear()  # ...which is late: the next event comes first
    fake_time.now = 12
    log.log("k", logging.ERROR, "y")
    log.log("k", logging.ERROR, "y")
    fake_time.advance(21.9)
    assert lines(caplog, "throttle") == ["x", "y (1 more in the last 10 s)"]


def test_rate_limited_log_is_one_kind_at_error(fake_time, caplog):
    limited = RateLimitedLog(logging.getLogger("rl"), 10, fake_time.clock, fake_time.schedule)
    for _ in range(4):
        limited.error("failed %s", "t")
    fake_time.advance(10)
    got = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert got == [("ERROR", "failed t"), ("ERROR", "failed t (2 more in the last 10 s)")]


def test_kafka_errors_are_one_kind_per_code_whatever_the_text(fake_time, caplog):
    logger = KafkaErrorLogger("output-broker", clock=fake_time.clock, schedule=fake_time.schedule)
    for ms in range(40):
        logger(KafkaError(KafkaError._TRANSPORT, f"b:1/bootstrap: refused (after {ms}ms)"))
    logger(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    fake_time.advance(10)
    assert lines(caplog, "forwarder.kafka") == [
        "Kafka error (output-broker): KafkaError{code=_TRANSPORT,val=-195,"
        'str="b:1/bootstrap: refused (after 0ms)"}',
        "Kafka error (output-broker): KafkaError{code=_ALL_BROKERS_DOWN,val=-187,"
        'str="1/1 brokers are down"}',
        "Kafka error (output-broker): KafkaError{code=_TRANSPORT,val=-195,"
        'str="b:1/bootstrap: refused (after 39ms)"} (38 more in the last 10 s)',
    ]


def test_every_auth_failure_reaches_the_handler_even_when_not_logged(fake_time):
    reasons = []
    logger = KafkaErrorLogger(
        "status-topic",
        clock=fake_time.clock,
        schedule=fake_time.schedule,
        on_fatal=reasons.append,
    )
    for _ in range(3):
        logger(KafkaError(KafkaError._AUTHENTICATION, "bad password"))
    assert len(reasons) == 3 and "status-topic" in reasons[0]


def test_librdkafka_lines_are_tagged_with_the_role_and_throttled_per_facility(fake_time, caplog):
    rdkafka = LibrdkafkaLog("config-topic", clock=fake_time.clock, schedule=fake_time.schedule)
    with caplog.at_level(logging.DEBUG):
        for ms in range(30):  # as confluent-kafka calls it
            rdkafka.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-2", f"{ms}ms")
        rdkafka.log(logging.WARNING, "%s [%s] %s", "FAIL", "rdkafka#consumer-2", "closed")
        rdkafka.log(logging.DEBUG, "%s [%s] %s", "CONNECT", "rdkafka#consumer-2", "a")
        rdkafka.log(logging.DEBUG, "%s [%s] %s", "CONNECT", "rdkafka#consumer-2", "b")
        fake_time.advance(10)
    assert lines(caplog, "forwarder.librdkafka") == [
        "config-topic: FAIL [rdkafka#consumer-2] 0ms",
        "config-topic: FAIL [rdkafka#consumer-2] closed",
        "config-topic: CONNECT [rdkafka#consumer-2] a",
        "config-topic: CONNECT [rdkafka#consumer-2] b",
        "config-topic: FAIL [rdkafka#consumer-2] 29ms (28 more in the last 10 s)",
    ]


def test_client_logging_gives_each_client_its_own_throttles():
    one, two = client_logging("output-broker"), client_logging("status-topic")
    assert one["logger"] is not two["logger"] and one["error_cb"] is not two["error_cb"]
    assert callable(one["error_cb"]) and callable(one["logger"].log)
