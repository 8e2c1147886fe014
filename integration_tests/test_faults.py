"""Faults: a broker outage loses nothing, SIGTERM flushes and exits 0, and a dead IOC never
stops the forwarding of PVs from other sources."""

from __future__ import annotations

import signal
import time

import pytest

from helpers.flatbuffers_helpers import describe
from helpers.pvs import COUNTER_RUN, counter_suffixes
from helpers.rig.api import RigTimeout
from integration_tests.forwarder_fixtures import (
    Stream,
    epics_read,
    epics_write,
    stop_broker,
    wait_counter_steps,
    wait_counters_end_stepping_by_one,
)

TIMEOUT = 30.0
OUTAGE_S = 10.0
OUTAGE_PUTS = 20
LOAD_COUNTERS = 20



@pytest.mark.extension
def test_updates_made_while_the_broker_is_down_all_arrive_after_it_returns(
    kafka, ioc, forwarder, control, outputs, topics
):
    name = ioc.pv("DOUBLE")
    topic = topics.new("outage")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic)
    control.add_and_wait([stream], reader, timeout=TIMEOUT)

    values = [100.0 + i for i in range(OUTAGE_PUTS)]
    stop_broker(kafka)
    try:
        # The outage is the scenario: OUTAGE_S seconds of broker down time with the PV
        # changing all along, paced evenly over the outage.
        start = time.monotonic()
        for i, value in enumerate(values):
            epics_write(name, value)
            next_at = start + (i + 1) * OUTAGE_S / OUTAGE_PUTS
            time.sleep(max(0.0, next_at - time.monotonic()))
        assert forwarder.is_running(), "the forwarder died while the broker was down"
    finally:
        if not kafka.is_running():
            kafka.start()

    epics_write(name, 999.0)
    reader.wait_for_message(
        lambda m: m.schema == "f144" and float(m.value) == 999.0,
        timeout=60.0,
        what="the first update after the outage",
    )
    got = [float(m.value) for m in reader.messages("f144", name)]
    missing = [v for v in values if v not in got]
    assert not missing, f"updates made during the outage were lost: {missing}; got {got}"
    during = [v for v in got if v in values]
    assert during == values, f"outage updates out of order or duplicated: {during}"


@pytest.mark.extension
def test_sigterm_flushes_every_accepted_update_and_exits_zero(
    ioc, forwarder, control, outputs, topics
):
    name = ioc.pv("DOUBLE")
    topic = topics.new("flush")
    reader = outputs(topic)
    stream = Stream(name, "f144", topic)
    control.add_and_wait([stream], reader, timeout=TIMEOUT)
    values = [float(i) for i in range(200, 400)]
    for value in values:
        epics_write(name, value)
    forwarder.send_signal(signal.SIGTERM)
    try:
        code = forwarder.wait_exit(timeout=30.0)
    except RigTimeout:
        pytest.fail("forwarder still running 30 s after SIGTERM:\n" + forwarder.log_tail(20))
    assert code == 0, f"exit code {code} after SIGTERM:\n{forwarder.log_tail(20)}"
    reader.wait_for(
        lambda: len(reader.messages("f144", name)) >= len(values) + 1,
        timeout=TIMEOUT,
        what=f"{len(values)} updates sent before SIGTERM",
    )
    got = [float(m.value) for m in reader.messages("f144", name)][1:]
    assert got == values, f"lost or reordered on SIGTERM: {sorted(set(values) - set(got))}"


@pytest.mark.ess
def test_stopping_the_ioc_does_not_stop_fake_or_table_server_pvs(
    ioc, table_server, epics_network, pv_prefix, forwarder, control, outputs, topics
):
    from helpers.epics_helpers import pva_put
    from helpers.pvs import TABLE

    ca_pv, fake_pv, table_pv = ioc.pv("DOUBLE"), f"{pv_prefix}FAKE", table_server.pv(TABLE)
    topic = topics.new("mixed")
    reader = outputs(topic)
    streams = [
        Stream(ca_pv, "f144", topic, "CA"),
        Stream(fake_pv, "f144", topic, "FAKE"),
        Stream(table_pv, "nttable_se00", topic, "PVA"),
    ]
    control.add_and_wait(streams, reader, timeout=TIMEOUT)

    ioc.stop()
    reader.wait_for_message(
        lambda m: m.schema == "ep01" and m.source == ca_pv and m.status == "DISCONNECTED",
        timeout=TIMEOUT,
        what=f"ep01 DISCONNECTED of {ca_pv}",
    )
    mark = reader.mark()
    reader.wait_for_count(
        3,
        schema="f144",
        source=fake_pv,
        since=mark,
        timeout=TIMEOUT,
        what="3 more FAKE updates after the IOC stopped",
    )
    pva_put(epics_network, table_pv, {"value.value": [3.25, 4.25], "value.timestamp": [1, 2]})
    table = reader.wait_for_count(1, schema="se00", source=table_pv, since=mark, timeout=TIMEOUT)
    assert table[-1].values.tolist() == [3.25, 4.25], describe(table[-1])
    assert forwarder.is_running()


BACKLOG_UPDATES = 10  # per counter, made while the broker is frozen
FROZEN_AFTER_SIGNAL_S = 1.5


@pytest.mark.extension
def test_sigterm_delivers_the_backlog_held_while_the_broker_was_frozen(
    kafka, ioc, forwarder, control, outputs, topics
):
    """Whatever the forwarder accepted before SIGTERM must reach the topic if the broker
    answers again within the shutdown bound, even if it was all still queued."""
    if not kafka.pausable:
        pytest.skip("the rig cannot freeze this broker (--kafka-bootstrap)")
    counters = [ioc.pv(s) for s in counter_suffixes(LOAD_COUNTERS)]
    topic = topics.new("backlog")
    reader = outputs(topic)
    streams = [Stream(name, "f144", topic) for name in counters]
    control.add_and_wait(streams, timeout=TIMEOUT)
    epics_write(ioc.pv(COUNTER_RUN), 1)
    paused = False
    try:
        for name in counters:
            reader.wait_for_count(3, schema="f144", source=name, timeout=TIMEOUT)
        kafka.pause()
        paused = True
        wait_counter_steps(
            counters[0],
            BACKLOG_UPDATES,
            timeout=TIMEOUT,
            what=f"{BACKLOG_UPDATES} updates of {counters[0]} while the broker is frozen",
        )
        epics_write(ioc.pv(COUNTER_RUN), 0)
        finals = {name: float(epics_read("CA", None, name)["value"]) for name in counters}
        forwarder.send_signal(signal.SIGTERM)
        # The fault itself: the broker stays frozen for a while after the signal, well
        # inside the forwarder's flush bound (app.FLUSH_TIMEOUT_S, 5 s), so the backlog must
        # be delivered during shutdown, not before it.
        time.sleep(FROZEN_AFTER_SIGNAL_S)
    finally:
        if paused:
            kafka.resume()
        epics_write(ioc.pv(COUNTER_RUN), 0)
    try:
        code = forwarder.wait_exit(timeout=30.0)
    except RigTimeout:
        pytest.fail("forwarder still running 30 s after SIGTERM:\n" + forwarder.log_tail(20))
    assert code == 0, f"exit code {code} after SIGTERM:\n{forwarder.log_tail(20)}"
    wait_counters_end_stepping_by_one(
        reader, finals, timeout=TIMEOUT, what="the final value of every counter"
    )
