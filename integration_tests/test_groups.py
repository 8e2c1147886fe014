"""Forwarder groups (issue 10): members with one config topic and ``--group`` share the
streams, each stream forwarded by exactly one live member, and a dead member's streams
resume on the others within the failover bound.

The load is the IOC's 100 counters (+1 every 0.1 s), so every value can be checked: in
steady state each stream's values go up by exactly 1 (nothing sent twice, nothing lost).
Each member has its own status topic, so each status says what that member forwards.
"""

from __future__ import annotations

import signal

import pytest
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType

from helpers import kafka_helpers
from helpers.forwarder_control import ForwarderControl, Stream, fc00, now_ms
from helpers.pvs import COUNTER_RUN, counter_suffixes
from integration_tests.forwarder_fixtures import epics_write
from integration_tests.group_fixtures import (
    FAILOVER_ALLOWED_S,
    Group,
    Traffic,
    counter_streams,
    longest_gap_s,
    not_plus_one,
    wait_all_forward,
)

# Three forwarders and 300 PVs at 10 Hz: one such test at a time (the noxfile's loadgroup).
pytestmark = pytest.mark.xdist_group("machine_load")


@pytest.fixture
def counters_running(ioc):
    epics_write(ioc.pv(COUNTER_RUN), 1)
    yield
    epics_write(ioc.pv(COUNTER_RUN), 0)


@pytest.mark.extension
def test_three_members_share_300_streams_each_forwarded_by_one_member_exactly_once(
    ioc, counters_running, forwarder_factory, control_factory, topics, outputs
):
    group = Group(forwarder_factory, control_factory, topics)
    group.start(3)
    streams, names = counter_streams(ioc, topics)
    traffic = Traffic(outputs, names)
    group.control.add(streams)
    shares = group.wait_shared({s.key for s in streams}, "3 members sharing 300 streams")
    print("shared:", shares, [(m.fwd.name, len(m.streams())) for m in group.members])
    for member in group.members:
        status = member.status().status
        assert status["group"] == group.name and status["member_id"]
    steady = now_ms()
    wait_all_forward(traffic, streams, steady, 20, "20 values of every stream")
    traffic.poll()
    bad = not_plus_one(traffic.data(steady))
    assert not bad, f"{len(bad)} streams did not go up by exactly 1: {list(bad.items())[:3]}"
    owners = group.owners()
    assert set(owners) == {s.key for s in streams}, "status no longer lists every stream"
    assert all(len(o) == 1 for o in owners.values()), "a stream is listed by two members"
    print("per member:", [(m.fwd.name, len(m.streams())) for m in group.members])


@pytest.mark.extension
@pytest.mark.slow
def test_a_killed_members_streams_resume_on_the_survivors_and_a_new_member_takes_some(
    ioc, counters_running, forwarder_factory, control_factory, topics, outputs
):
    group = Group(forwarder_factory, control_factory, topics)
    group.start(3)
    streams, names = counter_streams(ioc, topics)
    everything = {s.key for s in streams}
    traffic = Traffic(outputs, names)
    group.control.add(streams)
    group.wait_shared(everything, "3 members sharing all 300 streams")
    wait_all_forward(traffic, streams, now_ms(), 5, "5 values of every stream")

    victim = group.members[1]
    victims = victim.streams()
    victim_keys = {(s.topic, s.channel) for s in streams if s.key in victims}
    assert victims, "the member to kill forwards nothing"
    killed_ms = now_ms()
    victim.fwd.send_signal(signal.SIGKILL)
    victim.fwd.wait_exit(10)
    group.wait_shared(everything, "the 2 survivors sharing all 300 streams")
    wait_all_forward(traffic, streams, now_ms(), 5, "5 values of every stream after the kill")
    traffic.poll()
    data = traffic.data(killed_ms - 2000)
    gap, worst = longest_gap_s(data, victim_keys, killed_ms, now_ms())
    resumed = traffic.connected(killed_ms)
    print(f"failover: {len(victim_keys)} streams moved; longest gap {gap:.1f} s ({worst})")
    assert gap <= FAILOVER_ALLOWED_S, f"a moved stream was silent for {gap:.1f} s: {worst}"
    assert victim_keys <= resumed, "moved streams without ep01 CONNECTED from the new owner"

    rejoined_ms = now_ms()
    victim.fwd.start()
    group.wait_shared(everything, "3 members sharing all 300 streams after the rejoin")
    settled_ms = now_ms()
    wait_all_forward(traffic, streams, settled_ms, 5, "5 values of every stream after rejoin")
    traffic.poll()
    data = traffic.data(rejoined_ms - 2000)
    every = {(s.topic, s.channel) for s in streams}
    gap, worst = longest_gap_s(data, every, rejoined_ms, now_ms())
    print(f"rejoin: {len(victim.streams())} streams moved; longest gap {gap:.1f} s ({worst})")
    assert gap <= FAILOVER_ALLOWED_S, f"a stream was silent for {gap:.1f} s on rejoin: {worst}"
    bad = not_plus_one(traffic.data(now_ms() - 1000))
    assert not bad, f"after the rejoin, values not +1: {list(bad.items())[:3]}"


@pytest.mark.extension
def test_a_wildcard_remove_sent_while_a_member_is_down_applies_on_every_member(
    ioc, counters_running, forwarder_factory, control_factory, topics, outputs
):
    group = Group(forwarder_factory, control_factory, topics)
    group.start(2)
    topic = topics.new("ca-f144")
    streams = [Stream(ioc.pv(s), "f144", topic, "CA") for s in counter_suffixes(40)]
    removed = {s.key for s in streams if s.channel.endswith(("0", "1", "2"))}
    kept = {s.key for s in streams} - removed
    group.control.add(streams)
    group.wait_shared({s.key for s in streams}, "2 members sharing 40 streams")

    down = group.members[1]
    down.fwd.send_signal(signal.SIGKILL)
    down.fwd.wait_exit(10)
    for digit in "012":
        group.control.remove(channel=ioc.pv("CNT:0?") + digit, topic=topic)
    group.wait_shared(kept, "the survivor forwarding only the kept streams")

    down.fwd.start()
    group.wait_shared(kept, "both members sharing only the kept streams after the restart")
    traffic = Traffic(outputs, [topic])
    mark = now_ms()
    wait_all_forward(
        traffic, [s for s in streams if s.key in kept], mark, 5, "5 values of every kept stream"
    )
    traffic.poll()
    still = {pv for (_, pv) in traffic.data(mark)} & {k[0] for k in removed}
    assert not still, f"removed PVs still forwarded: {sorted(still)[:5]}"


@pytest.mark.extension
def test_a_member_restoring_an_older_snapshot_still_applies_the_commands_sent_after_it(
    kafka, ioc, counters_running, forwarder_factory, control_factory, topics, outputs
):
    """The storage snapshot can lag the commands: its writer stores one after applying a
    command, and if it dies first the next writer stores one only after the session
    timeout. A member starting then restores the older snapshot; the newer command must
    still reach it."""
    group = Group(forwarder_factory, control_factory, topics)
    topic = topics.new("ca-f144")
    stored, newer = (Stream(ioc.pv(s), "f144", topic, "CA") for s in counter_suffixes(2))
    # A snapshot holding one stream (the storage format is one fc00 ADD), then a command
    # that the snapshot does not hold, both before the member starts.
    kafka_helpers.produce(kafka.bootstrap, group.storage_topic, fc00(UpdateType.ADD, [stored]))
    commands = ForwarderControl(kafka.bootstrap, group.config_topic, topics.new("status"))
    try:
        commands.add([newer])
    finally:
        commands.close()
    group.start(1)
    group.wait_shared(
        {stored.key, newer.key}, "the member forwarding the stored stream and the newer one"
    )
    traffic = Traffic(outputs, [topic])
    wait_all_forward(traffic, [stored, newer], now_ms(), 3, "3 values of both streams")
