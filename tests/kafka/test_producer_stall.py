"""The shared producer on real librdkafka and a real broker, when the client holds messages and
reports nothing while the broker answers: each stream's status names the stall, and a new
client that reaches the broker takes over and sends every held message again, in order.

The hold is real: the first client's ``linger.ms`` of 10 minutes keeps its batch in its
partition queue, the state a client was seen stuck in after a broker restart (messages queued,
no delivery report, no error) while other clients of the process delivered."""

from __future__ import annotations

import logging

from confluent_kafka import Producer as ConfluentProducer

from forwarder.kafka.producer import Producer, producer_config
from forwarder.kafka.stream_counts import StreamCounts
from forwarder.metrics import Metrics
from helpers import kafka_helpers as kh
from helpers.polling import wait_until

TIMEOUT = 60.0
PER_STREAM = 500
STALL_TIMEOUT_S = 3.0


def test_a_client_holding_messages_is_replaced_by_one_that_reaches_the_broker_in_order(broker):
    topic = kh.unique_topic("producer-stall")
    kh.create_topics(broker.bootstrap, [topic])
    # librdkafka's lines go to pytest's log capture, not stderr.
    base = {"bootstrap.servers": broker.bootstrap, "logger": logging.getLogger("librdkafka")}
    clients: list[ConfluentProducer] = []

    def make_client() -> ConfluentProducer:
        config = {**base, "linger.ms": 600_000} if not clients else base
        clients.append(ConfluentProducer(producer_config(config)))
        return clients[-1]

    metrics = Metrics()
    producer = Producer(base, metrics, make_client=make_client, stall_timeout_s=STALL_TIMEOUT_S)
    streams = [StreamCounts(name, topic) for name in ("PV:A", "PV:B")]
    try:
        for n in range(PER_STREAM):
            for stream in streams:
                producer.produce(topic, stream.channel.encode(), b"%d" % n, 1_000 + n, stream)
        wait_until(
            lambda: all(s.error and s.error.startswith("no delivery report") for s in streams),
            timeout=TIMEOUT,
            what="each stream's status error naming the stall",
        )
        assert all(s.forwarded == 0 for s in streams)
        wait_until(lambda: producer.replacements == 1, timeout=TIMEOUT, what="the client replaced")
        for n in range(PER_STREAM, 2 * PER_STREAM):
            for stream in streams:
                producer.produce(topic, stream.channel.encode(), b"%d" % n, 1_000 + n, stream)
        wait_until(
            lambda: all(s.forwarded == 2 * PER_STREAM for s in streams),
            timeout=TIMEOUT,
            what="every message acknowledged by the broker",
        )
        records = kh.read_all(broker.bootstrap, topic, 4 * PER_STREAM, timeout=TIMEOUT)
    finally:
        producer.close(5)
    for stream in streams:
        mine = [r for r in records if r.key == stream.channel.encode()]
        assert [int(r.value) for r in mine] == list(range(2 * PER_STREAM))
        assert [r.kafka_timestamp_ms for r in mine] == [1_000 + n for n in range(2 * PER_STREAM)]
        assert (stream.dropped, stream.error) == (0, None)
    assert len(records) == 4 * PER_STREAM  # nothing twice: the held batch was never sent
    assert len(clients) == 2  # one probe, which became the replacement
    snapshot = metrics.snapshot()
    assert (snapshot["producer_replacements"], snapshot["updates_dropped"]) == (1, 0)
