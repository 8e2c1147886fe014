"""Contract tests of the rig's Kafka broker: a real broker, reached with kafka-python (admin,
producer) and the tests' topic reader (confluent-kafka).

They pin down what forwarder tests rely on (round trips, auto-created topics, the SASL
listener and its users, restarts that keep data, brokers side by side), so that a forwarder
test failing later is known not to be the broker's fault. Every broker comes from the ``rig``,
so each backend's broker is tested.
"""

from __future__ import annotations

import socket

import pytest
from confluent_kafka import KafkaError, Producer
from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError

from helpers import kafka_helpers as kh
from helpers.polling import wait_until
from helpers.rig.api import SASL_USERS, BrokerNotSupported
from helpers.rig.external_kafka import ExternalKafka

pytestmark = pytest.mark.rig


TIMEOUT = 30.0  # deadline for anything a test waits for
MECHANISMS = sorted(SASL_USERS)


@pytest.fixture
def _broker(kafka):
    """The suite's broker, whichever backend runs it."""
    return kafka


def _sasl(mechanism: str, password: str | None = None) -> dict:
    user, right_password = SASL_USERS[mechanism]
    return kh.sasl_config(mechanism, user, right_password if password is None else password)


def test_round_trip_keeps_key_value_and_producer_timestamp(_broker):
    topic = kh.unique_topic("round-trip")
    kh.create_topics(_broker.bootstrap, [topic])

    offset = kh.produce(_broker.bootstrap, topic, b"\x00\x00\x00\x00f144 payload", key=b"pv")

    records = kh.read_all(_broker.bootstrap, topic, 1, timeout=TIMEOUT)
    assert len(records) == 1
    record = records[0]
    assert (record.key, record.value, record.offset) == (
        b"pv",
        b"\x00\x00\x00\x00f144 payload",
        offset,
    )
    assert record.schema_id == b"f144"
    assert record.timestamp_type == 0  # create time: the producer's timestamp is kept


def test_a_topic_nobody_created_is_created_on_first_write(_broker):
    topic = kh.unique_topic("auto-created")
    with kh.admin(_broker.bootstrap) as client:
        assert topic not in client.list_topics()

    kh.produce(_broker.bootstrap, topic, b"first")

    assert [r.value for r in kh.read_all(_broker.bootstrap, topic, 1, timeout=TIMEOUT)] == [
        b"first"
    ]


def test_reader_reports_what_it_saw_when_the_wait_times_out(_broker):
    topic = kh.unique_topic("seen")
    kh.create_topics(_broker.bootstrap, [topic])
    kh.produce(_broker.bootstrap, topic, b"\x00\x00\x00\x00x5f2")
    with kh.TopicReader(_broker.bootstrap, topic) as reader:
        reader.wait_for_count(1, timeout=TIMEOUT)
        with pytest.raises(AssertionError, match=r"two records.*1 records.*x5f2"):
            reader.wait_for(lambda: len(reader.records) >= 2, timeout=0.5, what="two records")


def test_a_reader_whose_consumer_stops_fetching_starts_a_new_one_and_misses_nothing(_broker):
    """librdkafka issue 5153: an assigned consumer that fetches nothing after a broker
    restart, made here by pausing its partition."""
    topic = kh.unique_topic("stuck-reader")
    kh.create_topics(_broker.bootstrap, [topic])
    kh.produce(_broker.bootstrap, topic, b"first")
    with kh.TopicReader(_broker.bootstrap, topic) as reader:
        reader.wait_for_count(1, timeout=TIMEOUT)
        reader._consumer.pause(reader._consumer.assignment())
        for n in range(3):
            kh.produce(_broker.bootstrap, topic, b"later-%d" % n)
        reader.wait_for_count(4, timeout=TIMEOUT)
        assert [r.value for r in reader.records] == [b"first", b"later-0", b"later-1", b"later-2"]
        assert reader.restarts == 1


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_user_with_the_right_password_can_produce_and_consume(_broker, mechanism):
    topic = kh.unique_topic(f"sasl-{mechanism}")
    config = _sasl(mechanism)
    kh.create_topics(_broker.sasl_bootstrap, [topic], **config)

    kh.produce(_broker.sasl_bootstrap, topic, mechanism.encode(), **config)

    reader_config = kh.sasl_config_librdkafka(mechanism, *SASL_USERS[mechanism])
    over_sasl = kh.read_all(_broker.sasl_bootstrap, topic, 1, timeout=TIMEOUT, config=reader_config)
    over_plaintext = kh.read_all(_broker.bootstrap, topic, 1, timeout=TIMEOUT)
    assert [r.value for r in over_sasl] == [r.value for r in over_plaintext] == [mechanism.encode()]


def _librdkafka_producer(broker, mechanism: str, password: str | None = None):
    """A confluent-kafka producer (the forwarder's client library) on the SASL listener."""
    user, right_password = SASL_USERS[mechanism]
    errors: list[KafkaError] = []
    config = kh.sasl_config_librdkafka(mechanism, user,
                                       right_password if password is None else password)
    producer = Producer({"bootstrap.servers": broker.sasl_bootstrap, "error_cb": errors.append,
                         "log_level": 0, **config})
    return producer, errors


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_the_forwarders_client_library_authenticates_with_the_right_password(_broker, mechanism):
    topic = kh.unique_topic(f"sasl-rdkafka-{mechanism}")
    producer, errors = _librdkafka_producer(_broker, mechanism)
    delivered = []
    producer.produce(topic, b"via librdkafka",
                     on_delivery=lambda err, msg: delivered.append(err or msg.offset()))
    wait_until(lambda: producer.poll(0.1) is not None and delivered, timeout=TIMEOUT,
               what=f"delivery over SASL {mechanism}", seen=lambda: [e.str() for e in errors[-3:]])
    assert delivered == [0], delivered
    assert [e for e in errors if e.code() == KafkaError._AUTHENTICATION] == []
    assert [r.value for r in kh.read_all(_broker.bootstrap, topic, 1, timeout=TIMEOUT)] == [
        b"via librdkafka"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_wrong_password_is_an_authentication_error_not_a_hang(_broker, mechanism):
    producer, errors = _librdkafka_producer(_broker, mechanism, password="not-the-password")

    def auth_errors():
        producer.poll(0.1)
        return [e for e in errors if e.code() == KafkaError._AUTHENTICATION]

    found = wait_until(auth_errors, timeout=TIMEOUT, what="an authentication error",
                       seen=lambda: [e.str() for e in errors[-3:]])
    assert "Authentication failed" in found[0].str()
    assert producer.flush(0) == 0  # nothing was queued, nothing is stuck


def test_sasl_listener_refuses_clients_without_sasl(_broker):
    with pytest.raises((KafkaTimeoutError, SaslAuthenticationFailedError, OSError)):
        kh.admin(_broker.sasl_bootstrap, bootstrap_timeout_ms=3000)


def test_stop_then_start_keeps_messages_and_ports(_broker):
    if not _broker.restartable:
        pytest.skip("this broker cannot be restarted (an external --kafka-bootstrap)")
    topic = kh.unique_topic("survives-restart")
    kh.create_topics(_broker.bootstrap, [topic])
    kh.produce(_broker.bootstrap, topic, b"before the restart")
    addresses = (_broker.bootstrap, _broker.sasl_bootstrap)

    _broker.stop()
    assert not _broker.is_running()
    assert not kh.broker_answers(_broker.bootstrap)
    _broker.start()

    assert _broker.is_running()
    assert (_broker.bootstrap, _broker.sasl_bootstrap) == addresses
    records = kh.read_all(_broker.bootstrap, topic, 1, timeout=TIMEOUT)
    assert [r.value for r in records] == [b"before the restart"]
    kh.produce(_broker.sasl_bootstrap, topic, b"after", **_sasl("SCRAM-SHA-512"))
    assert [r.value for r in kh.read_all(_broker.bootstrap, topic, 2, timeout=TIMEOUT)] == [
        b"before the restart",
        b"after",
    ]


def test_two_brokers_side_by_side_do_not_collide(rig, _broker):
    second = rig.new_kafka()
    try:
        second.start()
        first_ports = {_broker.bootstrap, _broker.sasl_bootstrap}
        second_ports = {second.bootstrap, second.sasl_bootstrap}
        assert not first_ports & second_ports
        assert second.log_path != _broker.log_path

        topic = kh.unique_topic("side-by-side")
        kh.produce(_broker.bootstrap, topic, b"to the first")
        kh.produce(second.bootstrap, topic, b"to the second")

        assert [r.value for r in kh.read_all(_broker.bootstrap, topic, 1, timeout=TIMEOUT)] == [
            b"to the first"
        ]
        assert [r.value for r in kh.read_all(second.bootstrap, topic, 1, timeout=TIMEOUT)] == [
            b"to the second"
        ]
    finally:
        second.close()
    assert not second.is_running()
    assert not second.has_storage
    assert _broker.is_running()


def test_a_broker_that_cannot_start_fails_with_its_log(rig, _broker):
    broken = rig.new_kafka()
    # Hold the broker's own port so that it cannot bind it.
    host, port = broken.bootstrap.rsplit(":", 1)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    try:
        blocker.bind((host, int(port)))
        blocker.listen()
        with pytest.raises(RuntimeError, match=r"(?s)exited.*before it was ready.*log"):
            broken.start()
        assert not broken.is_running()
    finally:
        blocker.close()
        broken.close()


def test_an_external_broker_is_used_but_never_stopped(_broker):
    external = ExternalKafka(_broker.bootstrap)

    assert external.is_running()
    assert external.sasl_bootstrap is None
    assert external.forwarder_bootstrap == _broker.bootstrap
    for action in (external.start, external.stop, external.restart):
        with pytest.raises(BrokerNotSupported, match="not supported for an external broker"):
            action()
    assert _broker.is_running()
