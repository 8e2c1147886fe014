"""Per-configuration forwarder fixtures and the small test-side tools the scenarios share.

conftest.py loads this module as a plugin (``pytest_plugins``), so every fixture here is
available to all scenario files. Each forwarder fixture starts one forwarder through
the lead's ``forwarder_factory`` with an ini file from config-files/.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from helpers.forwarder_control import ForwarderControl
from helpers.forwarder_control import Stream as Stream  # for the scenario files
from helpers.kafka_helpers import TopicReader
from helpers.rig.paths import CONFIG_FILES

PROTOCOLS = ("CA", "PVA")


def ini_file(name: str) -> str:
    """``name`` if config-files/ has it; otherwise fail saying which file the rig lacks."""
    if not (CONFIG_FILES / name).is_file():
        pytest.fail(f"config-files/{name} is missing: the rig cannot start this forwarder")
    return name


# -- forwarders -------------------------------------------------------------------------------


@pytest.fixture
def storage_topic(topics) -> str:
    """An empty storage topic of this test."""
    return topics.new("storage")


@pytest.fixture
def forwarder_idle_updates(forwarder_factory):
    """A forwarder re-sending periodic streams every 500 ms (pv-update-period=500)."""
    return forwarder_factory(ini_file("forwarder_idle_updates.ini"))


@pytest.fixture
def forwarder_storage(forwarder_factory, storage_topic):
    """A forwarder saving its configuration to (and restoring it from) ``storage_topic``."""
    return forwarder_factory(ini_file("forwarder_storage.ini"), storage_topic=storage_topic)


@pytest.fixture
def forwarder_skip_retrieval(forwarder_factory, storage_topic):
    """A forwarder with a storage topic that is told not to restore from it."""
    return forwarder_factory(
        ini_file("forwarder_storage.ini"), storage_topic=storage_topic, skip_retrieval=True
    )


@pytest.fixture
def forwarder_sasl_plain(forwarder_factory):
    """A forwarder talking to the broker's SASL listener with SASL/PLAIN."""
    return forwarder_factory(ini_file("forwarder_sasl_plain.ini"), sasl="PLAIN")


@pytest.fixture
def forwarder_sasl_scram(forwarder_factory):
    """A forwarder talking to the broker's SASL listener with SCRAM-SHA-256."""
    return forwarder_factory(ini_file("forwarder_sasl_scram.ini"), sasl="SCRAM-SHA-256")


# -- talking to a forwarder and reading its output --------------------------------------------


@pytest.fixture
def output_kafka(rig, kafka):
    """A second broker of the rig, for a forwarder whose data must be held back (the broker
    frozen) while its commands and status still flow through ``kafka``."""
    if not kafka.pausable:
        pytest.skip(f"the rig cannot start and freeze brokers: {kafka.name} is not run by it")
    broker = rig.new_kafka()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def control_factory(kafka) -> Callable[..., ForwarderControl]:
    """control_factory(forwarder) -> a ForwarderControl on its config and status topics."""
    made: list[ForwarderControl] = []

    def make(fwd) -> ForwarderControl:
        ctl = ForwarderControl(kafka.bootstrap, fwd.spec.config_topic, fwd.spec.status_topic)
        made.append(ctl)
        return ctl

    yield make
    for ctl in made:
        ctl.close()


@pytest.fixture
def control(forwarder, control_factory) -> ForwarderControl:
    """The ForwarderControl of the default ``forwarder``."""
    return control_factory(forwarder)


@pytest.fixture
def outputs(kafka) -> Callable[[str], TopicReader]:
    """outputs(topic) -> a TopicReader of ``topic`` from its beginning."""
    made: list[TopicReader] = []

    def make(topic: str) -> TopicReader:
        reader = TopicReader(kafka.bootstrap, topic)
        made.append(reader)
        return reader

    yield make
    for reader in made:
        reader.close()


# -- EPICS reads with exact timestamps --------------------------------------------------------


def epics_read(protocol: str, network, name: str, timeout: float = 5.0) -> dict:
    """Read ``name`` over ``protocol`` ("CA" or "PVA"): value, timestamp_ns (exact, from the
    seconds and nanoseconds fields), severity and status."""
    if protocol == "PVA":
        from helpers.epics_helpers import pva_get

        reading = pva_get(network, name, timeout=timeout)
        raw = reading.raw
        ts = int(raw["timeStamp.secondsPastEpoch"]) * 1_000_000_000 + int(
            raw["timeStamp.nanoseconds"]
        )
        return {
            "value": reading.value,
            "timestamp_ns": ts,
            "severity": reading.severity,
            "status": reading.status,
            "message": reading.message,
        }
    import epics

    from helpers.epics_helpers import EpicsClientError, _require_ca

    _require_ca()
    pv = epics.get_pv(name, form="time", connect=True, timeout=timeout)
    if not pv.connected:
        raise EpicsClientError(f"CA: {name} did not connect within {timeout}s")
    data = pv.get_with_metadata(form="time", as_numpy=True, timeout=timeout, use_monitor=False)
    if data is None:
        raise EpicsClientError(f"CA: get of {name} timed out after {timeout}s")
    ts = int(data["posixseconds"]) * 1_000_000_000 + int(data["nanoseconds"])
    return {
        "value": data["value"],
        "timestamp_ns": ts,
        "severity": data["severity"],
        "status": data["status"],
        "message": "",
    }


def epics_write(name: str, value, timeout: float = 5.0) -> None:
    """Put over CA and wait for the record to process (both CA and PVA forwarders see it)."""
    from helpers.epics_helpers import ca_put

    ca_put(name, value, timeout=timeout)


def wait_counter_steps(name: str, steps: int, *, timeout: float, what: str) -> None:
    """Poll the IOC counter ``name`` over CA until it has gone up by ``steps`` from now."""
    from helpers.polling import wait_until

    start = float(epics_read("CA", None, name)["value"])
    wait_until(
        lambda: float(epics_read("CA", None, name)["value"]) >= start + steps,
        timeout=timeout,
        interval=0.1,
        what=what,
    )


def stop_counters(ioc, names: list[str]) -> dict[str, int]:
    """Stop the IOC's counters (``CNT:RUN`` 0); where each of ``names`` stopped, read over
    CA right after."""
    from helpers.pvs import COUNTER_RUN

    epics_write(ioc.pv(COUNTER_RUN), 0)
    return {n: int(round(float(epics_read("CA", ioc.network, n)["value"]))) for n in names}


def wait_counters_end_stepping_by_one(
    reader: TopicReader, finals: dict[str, float], *, timeout: float, what: str
) -> None:
    """Wait until each counter's newest f144 value is its final one (``finals``: PV -> where
    it stopped), then require every counter's series to step by exactly +1."""
    from helpers.pvs import counter_breaks

    def values(name: str) -> list[float]:
        return [float(m.value) for m in reader.messages("f144", name)]

    reader.wait_for(
        lambda: all(values(name)[-1:] == [final] for name, final in finals.items()),
        timeout=timeout,
        what=what,
    )
    for name in finals:
        breaks = counter_breaks(values(name))
        assert not breaks, f"{name} did not step by +1: {breaks}"


@contextlib.contextmanager
def frozen(broker) -> Iterator[None]:
    """``broker`` frozen (``pause``) for the block, and thawed however the block ends."""
    broker.pause()
    try:
        yield
    finally:
        broker.resume()


def stop_broker(kafka) -> None:
    """Stop the session's broker for a fault scenario (skips for one the rig does not run).
    The caller restarts it in ``finally``."""
    if not kafka.restartable:  # an external --kafka-bootstrap broker cannot be stopped
        pytest.skip(f"cannot stop this broker: {kafka.name} is not run by the rig")
    kafka.stop()
