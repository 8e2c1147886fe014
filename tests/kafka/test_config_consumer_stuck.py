"""The config consumer on real librdkafka and a real broker, when its client stops fetching
while the broker answers: it is replaced, and the commands it left unread are delivered.

The stop is real: the first client's partitions are paused right after assignment, the state
an assigned librdkafka consumer was seen in after a broker restart (librdkafka issue 5153:
no fetch, no error) while other clients of the process read on."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, TopicPartition

from forwarder.kafka.consumer import ConfigConsumer
from helpers import kafka_helpers as kh
from helpers.polling import wait_until

TIMEOUT = 60.0


class PausedAfterAssign(Consumer):
    def assign(self, partitions):
        super().assign(partitions)
        self.pause(partitions)


def test_a_config_consumer_that_stops_fetching_is_replaced_and_delivers_every_command(broker):
    topic = kh.unique_topic("config-stuck")
    kh.create_topics(broker.bootstrap, [topic])
    made: list[Consumer] = []

    def factory(config):
        made.append((PausedAfterAssign if not made else Consumer)(config))
        return made[-1]

    base = {"bootstrap.servers": broker.bootstrap, "logger": logging.getLogger("librdkafka")}
    consumer = ConfigConsumer(base, topic, consumer_factory=factory, end_check_s=1.0)
    try:
        wait_until(consumer.try_assign, timeout=TIMEOUT, what="the config topic assigned")
        commands = [b"command-%d" % n for n in range(3)]
        for command in commands:
            kh.produce(broker.bootstrap, topic, command)
        got: list[bytes] = []
        sent = time.monotonic()
        while len(got) < len(commands) and time.monotonic() < sent + TIMEOUT:
            got.extend(consumer.poll(0.2))  # the forwarder's loop: poll, and poll again
        took = time.monotonic() - sent
        assert got == commands, f"after {took:.1f} s: {got}"
        assert consumer.replacements == 1 and len(made) == 2
        assert took >= 10.0, "delivered before the stuck client was replaced: not stuck"
        (position,) = made[1].position([TopicPartition(topic, 0)])
        assert position.offset == len(commands)
    finally:
        consumer.close()
