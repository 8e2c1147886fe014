import time
from types import SimpleNamespace

import confluent_kafka
import pytest
from confluent_kafka import KafkaError

from forwarder.config.storage import StorageUnavailable
from forwarder.kafka.client_log import KafkaErrorLogger
from forwarder.kafka.consumer import ConfigConsumer, KafkaTopicReader
from helpers.polling import wait_until


class FakeMessage:
    def __init__(self, offset, value, error=None, headers=None, partition=0):
        self._offset, self._value, self._error, self._headers = offset, value, error, headers
        self._partition = partition

    def partition(self):
        return self._partition

    def headers(self):
        return self._headers

    def offset(self):
        return self._offset

    def value(self):
        return self._value

    def error(self):
        return self._error

    def timestamp(self):
        return (1, 5000 + self._offset)


class FakeConfluentConsumer:
    """Just enough of confluent_kafka.Consumer: one topic, partition -> list of values."""

    def __init__(self, config, topic="t", data=None):
        self.config = config
        self.topic = topic
        self.data = data  # None: topic does not exist
        self.assignment = []
        self.positions = {}
        self.closed = False
        self.fail_metadata = False
        self.stuck = False  # fetches nothing, as librdkafka after some broker restarts
        self.beyond_last = 0  # offsets past the last record, e.g. a transaction marker

    def list_topics(self, topic, timeout):
        if self.fail_metadata:
            raise confluent_kafka.KafkaException(KafkaError(KafkaError._TRANSPORT))
        if self.data is None:
            err = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
            return SimpleNamespace(topics={topic: SimpleNamespace(error=err, partitions={})})
        parts = {p: object() for p in self.data}
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions=parts)})

    def offsets_for_times(self, tps, timeout):
        """Record timestamps are 5000 + offset (see FakeMessage)."""
        out = []
        for tp in tps:
            n = len(self.data[tp.partition])
            first = max(0, tp.offset - 5000)
            offset = first if first < n else -1
            out.append(SimpleNamespace(partition=tp.partition, offset=offset, error=None))
        return out

    def get_watermark_offsets(self, tp, timeout, cached):
        assert cached is False
        return (0, len(self.data[tp.partition]) + self.beyond_last)

    def assign(self, tps):
        self.assignment = [(tp.partition, tp.offset) for tp in tps]
        self.positions = {tp.partition: tp.offset for tp in tps}

    def consume(self, num_messages, timeout):
        out = []
        if self.stuck:
            return out
        for p, offset in list(self.positions.items()):
            values = self.data[p]
            while offset < len(values) and len(out) < num_messages:
                out.append(FakeMessage(offset, values[offset], partition=p))
                offset += 1
            self.positions[p] = offset
        return out

    def position(self, tps):
        return [SimpleNamespace(offset=self.positions[tp.partition]) for tp in tps]

    def close(self):
        self.closed = True


def make(cls, data, **kwargs):
    made = []

    def factory(config):
        made.append(FakeConfluentConsumer(config, "t", data))
        return made[-1]

    obj = cls({"bootstrap.servers": "b:1"}, "t", consumer_factory=factory, **kwargs)
    return obj, made[0]


def test_config_consumer_reads_only_commands_written_since_it_started():
    # Timestamps are 5000 + offset: offsets 0-1 of partition 0 predate the start at 5002.
    data = {0: [b"old1", b"old2", b"since-start"], 1: [b"old3"]}
    consumer, fake = make(ConfigConsumer, data, started_ms=5002)
    assert fake.config["group.id"].startswith("forwarder-")
    assert fake.config["enable.auto.commit"] is False
    assert consumer.try_assign()
    assert fake.assignment == [(0, 2), (1, 1)]
    assert consumer.poll(0.1) == [b"since-start"]
    fake.data[0].append(b"new")
    assert consumer.poll(0.1) == [b"new"]


def test_config_consumer_replays_commands_since_an_earlier_time_only_before_it_is_assigned():
    # A group member whose snapshot (at 5001) is older than its start (5002) replays from it.
    data = {0: [b"old1", b"after-snapshot", b"since-start"], 1: [b"old3"]}
    consumer, fake = make(ConfigConsumer, data, started_ms=5002)
    consumer.replay_since(5001)
    consumer.replay_since(6000)  # later than the start: changes nothing
    assert consumer.try_assign()
    assert consumer.poll(0.1) == [b"after-snapshot", b"since-start"]
    consumer.replay_since(0)  # assigned already: too late to go back
    assert consumer.poll(0.1) == []


def test_config_consumer_reads_a_topic_created_after_it_started_from_the_beginning():
    clock = SimpleNamespace(now=0.0)
    # started_ms far in the future: by time alone it would skip every message
    consumer, fake = make(ConfigConsumer, None, clock=lambda: clock.now, started_ms=10**12)
    assert not consumer.try_assign()
    fake.data = {0: [b"first-add", b"second"]}
    clock.now = 1.0
    assert consumer.try_assign()
    assert consumer.poll(0.1) == [b"first-add", b"second"]


def test_config_consumer_retries_until_the_topic_exists(caplog):
    clock = SimpleNamespace(now=0.0)
    consumer, fake = make(ConfigConsumer, None, clock=lambda: clock.now, retry_interval_s=1.0)
    assert not consumer.try_assign()
    assert "does not exist yet" in caplog.text
    fake.data = {0: []}
    assert not consumer.try_assign()  # too soon to retry
    clock.now = 1.0
    assert consumer.try_assign() and consumer.assigned


def test_config_consumer_survives_an_unreachable_broker(caplog):
    consumer, fake = make(ConfigConsumer, {0: []})
    fake.fail_metadata = True
    assert not consumer.try_assign()
    assert "Cannot reach config topic t" in caplog.text


def make_replaceable(data, clock, beyond_last=0, end_check_s=3600.0):
    """A ConfigConsumer whose consumers share ``data``; the list of those it made."""
    made = []

    def factory(config):
        made.append(FakeConfluentConsumer(config, "t", data))
        made[-1].beyond_last = beyond_last
        return made[-1]

    consumer = ConfigConsumer(
        {"bootstrap.servers": "b:1"},
        "t",
        consumer_factory=factory,
        clock=lambda: clock.now,
        started_ms=0,
        end_check_s=end_check_s,
    )
    return consumer, made


def test_a_config_consumer_that_stops_fetching_is_replaced_and_no_command_is_lost(caplog):
    clock = SimpleNamespace(now=0.0)
    data = {0: [b"a", b"b"], 1: [b"c"]}
    consumer, made = make_replaceable(data, clock)
    assert consumer.try_assign()
    assert sorted(consumer.poll(0.1)) == [b"a", b"b", b"c"]
    made[0].stuck = True
    data[0].extend([b"d", b"e"])
    consumer.refresh_ends()
    for now in (1.0, 5.0, 10.9):
        clock.now = now
        assert consumer.poll(0.1) == [] and len(made) == 1, f"replaced at {now} s"
    clock.now = 11.0
    assert consumer.poll(0.1) == []
    assert len(made) == 2
    wait_until(lambda: made[0].closed, timeout=5, what="the stuck consumer closed")
    assert made[1].assignment == [(0, 2), (1, 1)]
    assert consumer.poll(0.1) == [b"d", b"e"]
    assert consumer.replacements == 1
    assert "read nothing for 10 s while 2 commands waited on t" in caplog.text


def test_an_idle_config_consumer_is_not_replaced():
    clock = SimpleNamespace(now=0.0)
    consumer, made = make_replaceable({0: [b"a"]}, clock)
    assert consumer.try_assign()
    assert consumer.poll(0.1) == [b"a"]
    made[0].stuck = True  # it would fetch nothing, but there is nothing to fetch
    consumer.refresh_ends()
    for now in range(0, 100, 5):
        clock.now = float(now)
        assert consumer.poll(0.1) == []
    assert len(made) == 1


def test_a_topic_end_no_consumer_reaches_backs_the_replacements_off():
    """E.g. a transaction marker after the last command: the end stays one past it."""
    clock = SimpleNamespace(now=0.0)
    consumer, made = make_replaceable({0: [b"a"]}, clock, beyond_last=1, end_check_s=5.0)
    assert consumer.try_assign()
    assert consumer.poll(0.1) == [b"a"]
    replaced_at = []
    for tenth in range(0, 1000):
        clock.now = tenth / 10
        consumer.poll(0)
        if len(made) > len(replaced_at) + 1:
            replaced_at.append(clock.now)
    # 10 s, then 20 s, then 40 s; each new consumer asks for the end within 5 s of its start
    assert len(replaced_at) == 3
    gaps = [b - a for a, b in zip([0.0, *replaced_at], replaced_at, strict=False)]
    assert [10 <= gaps[0] <= 15, 20 <= gaps[1] <= 25, 40 <= gaps[2] <= 45] == [True] * 3, gaps


def test_topic_reader_reads_ranges_with_timestamps():
    reader, _fake = make(KafkaTopicReader, {0: [b"a", b"b", b"c"]})
    assert reader.partitions(1) == {0: (0, 3)}
    got = reader.read(0, 1, 3, deadline=float("inf"))
    assert [(m.offset, m.value, m.timestamp_ms) for m in got] == [(1, b"b", 5001), (2, b"c", 5002)]


def test_topic_reader_missing_topic():
    reader, _fake = make(KafkaTopicReader, None)
    assert reader.partitions(1) is None


def test_topic_reader_unreachable_broker_is_not_a_missing_topic():
    reader, fake = make(KafkaTopicReader, {0: [b"a"]})
    fake.fail_metadata = True
    with pytest.raises(StorageUnavailable):
        reader.partitions(1)


def test_topic_reader_read_that_cannot_finish_raises():
    reader, _fake = make(KafkaTopicReader, {0: [b"a"]})
    with pytest.raises(StorageUnavailable):
        reader.read(0, 0, 5, deadline=0.0)


def test_a_storage_read_that_timed_out_is_retried_on_a_new_consumer():
    """The old one may have stopped fetching for good (librdkafka issue 5153)."""
    made = []

    def factory(config):
        made.append(FakeConfluentConsumer(config, "t", {0: [b"a", b"b"]}))
        return made[-1]

    reader = KafkaTopicReader({"bootstrap.servers": "b:1"}, "t", consumer_factory=factory)
    made[0].stuck = True
    with pytest.raises(StorageUnavailable):
        reader.read(0, 0, 2, deadline=time.monotonic() + 0.3)
    assert len(made) == 2
    wait_until(lambda: made[0].closed, timeout=5, what="the stuck consumer closed")
    got = reader.read(0, 0, 2, deadline=time.monotonic() + 5)
    assert [m.value for m in got] == [b"a", b"b"]


def test_error_logger_logs_auth_failures_at_error_once_per_period(caplog):
    clock = SimpleNamespace(now=0.0)
    logger = KafkaErrorLogger(
        "config-topic", repeat_s=30, clock=lambda: clock.now, schedule=lambda *_: None
    )
    error = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: bad password")
    logger(error)
    logger(error)
    clock.now = 31
    logger(error)
    records = [r for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(records) == 2 and all(r.levelname == "ERROR" for r in records)
    assert "bad password" in records[0].getMessage()


def test_auth_failures_are_reported_to_the_handler_other_errors_are_not():
    reasons = []
    logger = KafkaErrorLogger("output-broker", on_fatal=reasons.append)
    logger(KafkaError(KafkaError._TRANSPORT, "broker down"))
    logger(KafkaError(KafkaError._AUTHENTICATION, "invalid credentials"))
    assert len(reasons) == 1
    assert "output-broker" in reasons[0] and "invalid credentials" in reasons[0]


def test_a_fatal_client_error_is_reported_to_the_handler_and_logged_critical(caplog):
    reasons = []
    logger = KafkaErrorLogger("output-broker", on_fatal=reasons.append)
    logger(KafkaError(KafkaError._FATAL, "out of order sequence number", fatal=True))
    assert len(reasons) == 1 and "out of order sequence number" in reasons[0]
    assert any(r.levelname == "CRITICAL" for r in caplog.records)


def test_config_consumer_passes_the_auth_handler_to_its_error_callback():
    reasons = []
    made = []
    ConfigConsumer(
        {"bootstrap.servers": "b:1"},
        "t",
        consumer_factory=lambda config: made.append(config) or FakeConfluentConsumer(config),
        on_fatal=reasons.append,
    )
    made[0]["error_cb"](KafkaError(KafkaError._AUTHENTICATION, "bad"))
    assert len(reasons) == 1
