"""A real Kafka broker (the rig's local JVM on free ports) for the tests of the forwarder's
own Kafka code, started once per module and stopped after it."""

from __future__ import annotations

import pytest

from helpers.rig.local.kafka import LocalKafka


@pytest.fixture(scope="module")
def broker():
    kafka = LocalKafka(name="client-tests-kafka")
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()
