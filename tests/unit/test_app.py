import json
import threading

import pytest
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType
from streaming_data_types.forwarder_config_update_fc00 import (
    StreamInfo,
    deserialise_fc00,
    serialise_fc00,
)
from streaming_data_types.status_x5f2 import deserialise_x5f2

from forwarder import app as app_module
from forwarder.app import Forwarder, Parts
from forwarder.cli import parse_settings
from forwarder.config.storage import StorageUnavailable, StoredMessage, serialise_config
from forwarder.config.streams import StreamSpec

from .fakes_control import FakeSink, FakeStreams

SPEC = StreamSpec("SIM:A", "f144", "data", "CA")
ADD_A = serialise_fc00(UpdateType.ADD, [StreamInfo("SIM:A", "f144", "data", 1, 0)])


def settings(*extra):
    return parse_settings(
        [
            "--config-topic",
            "b:9092/cfg",
            "--status-topic",
            "b:9092/status",
            "--output-broker",
            "b:9092",
            "--service-id",
            "svc",
            *extra,
        ],
        env={},
    )


class Journal:
    """Shared record of shutdown calls, to check their order."""

    def __init__(self):
        self.events = []


class FakeConsumer:
    def __init__(self, journal, assign_after=0):
        self.journal = journal
        self.assigned = False
        self.assign_attempts = 0
        self.assign_after = assign_after
        self.queue = []
        self.lock = threading.Lock()
        self.raise_once = None

    def try_assign(self, timeout):
        self.assign_attempts += 1
        self.assigned = self.assign_attempts > self.assign_after
        return self.assigned

    def send(self, payload):
        with self.lock:
            self.queue.append(payload)

    def poll(self, timeout):
        if self.raise_once:
            error, self.raise_once = self.raise_once, None
            raise error
        threading.Event().wait(min(timeout, 0.02))  # stands in for the broker round trip
        with self.lock:
            out, self.queue = self.queue, []
        return out

    def close(self):
        self.journal.events.append("consumer.close")


class FakeProducer(FakeSink):
    def __init__(self, journal, name):
        super().__init__()
        self.journal, self.name = journal, name

    def close(self, timeout):
        assert timeout > 0
        self.journal.events.append(f"{self.name}.close")


class FakeMetrics:
    def __init__(self):
        self.counts = {}
        self.stopped = False

    def inc(self, name, n=1):
        self.counts[name] = self.counts.get(name, 0) + n

    def stop(self):
        self.stopped = True


class FakeFactory:
    def __init__(self, journal):
        self.journal = journal

    def close(self):
        self.journal.events.append("factory.close")


class JournalStreams(FakeStreams):
    def __init__(self, journal, specs=()):
        super().__init__(specs)
        self.journal = journal

    def close(self):
        self.journal.events.append("manager.close")


def make_parts(storage_reader=None, assign_after=0, with_storage=False):
    journal = Journal()
    parts = Parts(
        metrics=FakeMetrics(),
        output_producer=FakeProducer(journal, "output"),
        status_sink=FakeProducer(journal, "status"),
        storage_sink=FakeProducer(journal, "storage") if with_storage else None,
        source_factories={"CA": FakeFactory(journal)},
        manager=JournalStreams(journal),
        config_consumer=FakeConsumer(journal, assign_after),
        storage_reader=storage_reader,
    )
    parts.extra_producers = [parts.status_sink] + ([parts.storage_sink] if with_storage else [])
    return parts, journal


def statuses(parts):
    return [json.loads(deserialise_x5f2(v).status_json) for v in parts.status_sink.values()]





def test_no_status_before_the_config_consumer_is_assigned():
    parts, _journal = make_parts(assign_after=2)
    fwd = Forwarder(settings(), parts)
    fwd.step()
    fwd.step()
    assert parts.status_sink.messages == []
    fwd.step()
    assert len(parts.status_sink.messages) == 1


def test_commands_are_applied_stored_and_reported_and_counted():
    parts, _journal = make_parts(with_storage=True)
    fwd = Forwarder(settings("--storage-topic", "b:9092/store"), parts)
    fwd.step()
    parts.config_consumer.send(ADD_A)
    parts.config_consumer.send(b"garbage")
    fwd.step()
    assert parts.manager.specs() == [SPEC]
    (stored,) = parts.storage_sink.values("store")
    assert [s.channel for s in deserialise_fc00(stored).streams] == ["SIM:A"]
    assert statuses(parts)[-1]["streams"][0]["channel_name"] == "SIM:A"
    assert parts.metrics.counts == {"config_commands_accepted": 1, "config_commands_rejected": 1}


def test_loop_errors_are_logged_and_counted_not_fatal(caplog):
    parts, _journal = make_parts()
    fwd = Forwarder(settings(), parts)
    parts.config_consumer.raise_once = RuntimeError("kaboom")
    fwd.step()
    fwd.step()
    assert parts.metrics.counts["main_loop_errors"] == 1
    assert "kaboom" in caplog.text
    parts.config_consumer.send(ADD_A)
    fwd.step()
    assert parts.manager.specs() == [SPEC]


def test_restores_from_storage_before_the_first_status():
    class Reader:
        closed = False

        def partitions(self, timeout):
            return {0: (0, 1)}

        def read(self, partition, start, end, deadline):
            return [StoredMessage(0, serialise_config([SPEC]), 1)]

        def close(self):
            Reader.closed = True

    parts, _journal = make_parts(storage_reader=Reader(), with_storage=True)
    fwd = Forwarder(settings("--storage-topic", "b:9092/store"), parts)
    fwd.restore()
    assert parts.manager.specs() == [SPEC]
    assert Reader.closed
    (stored,) = parts.storage_sink.values("store")  # the restored config is stored again
    assert [s.channel for s in deserialise_fc00(stored).streams] == ["SIM:A"]
    assert parts.status_sink.messages == []  # no status before the consumer is assigned
    fwd.step()
    assert statuses(parts)[0]["streams"][0]["channel_name"] == "SIM:A"


def test_an_unreachable_storage_topic_is_retried_and_nothing_runs_until_restored(
    monkeypatch, caplog
):
    """Starting empty while the broker is away would let the next command overwrite the
    stored configuration; so restore retries, logging at most one line per interval."""
    monkeypatch.setattr(app_module, "RESTORE_FIRST_RETRY_S", 0.0)
    monkeypatch.setattr(app_module, "RESTORE_MAX_RETRY_S", 0.0)

    class FlakyReader:
        attempts = 0

        def partitions(self, timeout):
            FlakyReader.attempts += 1
            if FlakyReader.attempts <= 3:
                raise StorageUnavailable("broker down")
            return {0: (0, 1)}

        def read(self, partition, start, end, deadline):
            return [StoredMessage(0, serialise_config([SPEC]), 1)]

        def close(self):
            pass

    parts, _journal = make_parts(storage_reader=FlakyReader(), with_storage=True)
    fwd = Forwarder(settings("--storage-topic", "b:9092/store"), parts)
    assert fwd.restore()
    assert FlakyReader.attempts == 4
    assert parts.manager.specs() == [SPEC]
    assert caplog.text.count("Cannot restore the configuration") == 1  # one per 10 s
    (stored,) = parts.storage_sink.values("store")
    assert [s.channel for s in deserialise_fc00(stored).streams] == ["SIM:A"]


def test_a_stop_while_restoring_ends_the_run_without_touching_storage():
    class DownReader:
        def partitions(self, timeout):
            raise StorageUnavailable("broker down")

        def close(self):
            pass

    parts, _journal = make_parts(storage_reader=DownReader(), with_storage=True)
    fwd = Forwarder(settings("--storage-topic", "b:9092/store"), parts)
    fwd.stop.set()
    fwd.run()
    assert parts.storage_sink.values("store") == []





@pytest.mark.parametrize("extra", [(), ("--skip-retrieval",)])
def test_build_parts_wiring_with_stubbed_libraries(monkeypatch, extra):
    """build_parts passes the settings to the agreed constructors."""
    import forwarder.kafka.consumer as consumer_mod
    import forwarder.kafka.producer as producer_mod
    import forwarder.metrics as metrics_mod
    import forwarder.sources as sources_mod

    made = {}
    manager_mod = pytest.importorskip("forwarder.manager")

    class Producer:
        def __init__(self, config, metrics, buffer_bytes=None):
            made.setdefault("producers", []).append(config)
            made.setdefault("budgets", []).append(buffer_bytes)

    class Manager:
        def __init__(self, producer, factories, *, service_id, pv_update_period_ms, metrics):
            made["manager"] = (service_id, pv_update_period_ms, factories)

    monkeypatch.setattr(producer_mod, "Producer", Producer)
    monkeypatch.setattr(manager_mod, "StreamManager", Manager)
    monkeypatch.setattr(metrics_mod, "Metrics", lambda: object())
    monkeypatch.setattr(
        sources_mod, "make_source_factories", lambda ms, metrics, queue: {"FAKE": ms, "PVA": queue}
    )
    monkeypatch.setattr(consumer_mod, "ConfigConsumer", lambda cfg, topic, **kw: ("config", topic))
    monkeypatch.setattr(
        consumer_mod, "KafkaTopicReader", lambda cfg, topic, **kw: ("reader", topic)
    )
    s = settings(
        "--storage-topic",
        "b:9092/store",
        "--pv-update-period",
        "500",
        "--producer-buffer-mb",
        "3",
        *extra,
    )
    parts = app_module.build_parts(s, lambda reason: None)
    assert made["manager"] == ("svc", 500, {"FAKE": 1000, "PVA": 64})
    assert made["budgets"] == [3 * 1024 * 1024, None, None]  # only the data producer's
    assert len(made["producers"]) == 3
    assert all(callable(c["error_cb"]) for c in made["producers"])
    assert parts.config_consumer == ("config", "cfg")
    assert parts.storage_reader == (None if extra else ("reader", "store"))


def test_a_message_that_breaks_handling_does_not_lose_the_rest_of_the_batch(caplog):
    parts, _journal = make_parts()
    fwd = Forwarder(settings(), parts)
    fwd.step()
    real_handle = fwd.controller.handle_message

    def handle(payload, origin="config message"):
        if payload == b"explode":
            raise RuntimeError("handler bug")
        return real_handle(payload, origin)

    fwd.controller.handle_message = handle
    parts.config_consumer.send(b"explode")
    parts.config_consumer.send(ADD_A)
    fwd.step()
    assert parts.manager.specs() == [SPEC]
    assert "handler bug" in caplog.text


def test_broken_metrics_never_stop_the_loop():
    parts, _journal = make_parts()

    def broken_inc(name, n=1):
        raise KeyError(name)

    parts.metrics.inc = broken_inc
    fwd = Forwarder(settings(), parts)
    parts.config_consumer.raise_once = RuntimeError("first")
    fwd.step()
    parts.config_consumer.send(ADD_A)
    fwd.step()
    assert parts.manager.specs() == [SPEC]


def test_producers_are_closed_together_within_one_bound():
    parts, journal = make_parts(with_storage=True)
    both_closing = threading.Barrier(3, timeout=5)

    class SlowProducer(FakeProducer):
        def close(self, timeout):
            both_closing.wait()  # only passes if all three close at the same time
            super().close(timeout)

    parts.output_producer = SlowProducer(journal, "output")
    parts.extra_producers = [SlowProducer(journal, "status"), SlowProducer(journal, "storage")]
    Forwarder(settings("--storage-topic", "b:9092/store"), parts).shutdown()
    assert {"output.close", "status.close", "storage.close"} <= set(journal.events)
