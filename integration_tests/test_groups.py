"""Forwarder groups (issue 10): members with one config topic and ``--group`` share the
streams, each stream forwarded by exactly one live member, and a dead member's streams
resume on the others within the failover bound.

The load is the IOC's 100 counters (+1 every 0.1 s), so every value can be checked: in
steady state each stream's values go up by exactly 1 (nothing sent twice, nothing lost).
Each member has its own status topic, so each status says what that member forwards.
"""

from __future__ import annotations

import signal
import time
import uuid

import pytest
from streaming_data_types.fbschemas.forwarder_config_update_fc00.UpdateType import UpdateType

from helpers import kafka_helpers
from helpers.forwarder_control import ForwarderControl, Stream, fc00, now_ms
from helpers.polling import wait_until
from helpers.pvs import COUNTER_COUNT, COUNTER_RUN, counter_suffixes
from integration_tests.forwarder_fixtures import epics_write

# Three forwarders and 300 PVs at 10 Hz: one such test at a time (the noxfile's loadgroup).
pytestmark = pytest.mark.xdist_group("machine_load")

# The documented failover bound (README "Scaling out"): session.timeout.ms 6 s + one
# heartbeat (1 s) + one rebalance and the re-subscription (~3 s).
FAILOVER_BOUND_S = 10.0
# The same bound with room for this contended 2-core machine; a 45 s session timeout (KIP-848
# defaults) or a stream nobody takes over exceeds it.
FAILOVER_ALLOWED_S = 2 * FAILOVER_BOUND_S
SETTLE_TIMEOUT_S = 90.0  # 3 members and 300 first values on a busy 2-core machine


class Member:
    """One group member and the control reading its own status topic."""

    def __init__(self, fwd, control):
        self.fwd = fwd
        self.control = control

    def status(self):
        """The newest status of this member (None before the first)."""
        self.control.poll_status()
        return self.control.statuses[-1].status if self.control.statuses else None

    def streams(self) -> set[tuple[str, str, str, str]]:
        status = self.status()
        return self.control.statuses[-1].streams if status is not None else set()


class Group:
    """Members started with the same config topic, storage topic and group name."""

    def __init__(self, forwarder_factory, control_factory, topics):
        self._factory = forwarder_factory
        self._control_factory = control_factory
        self.config_topic = topics.new("config")
        self.storage_topic = topics.new("storage")
        self.name = f"g{uuid.uuid4().hex[:6]}"
        self.members: list[Member] = []

    def start(self, count: int) -> list[Member]:
        new = []
        for _ in range(count):
            fwd = self._factory(
                "forwarder.ini",
                config_topic=self.config_topic,
                storage_topic=self.storage_topic,
                extra_args=("--group", self.name, "--verbosity", "Info"),
            )
            new.append(Member(fwd, self._control_factory(fwd)))
        self.members += new
        return new

    @property
    def control(self):
        """Commands go to the shared config topic through any member's control."""
        return self.members[0].control

    def live(self) -> list[Member]:
        return [m for m in self.members if m.fwd.is_running()]

    def owners(self) -> dict[tuple, list[str]]:
        """Stream -> the live members whose newest status lists it."""
        out: dict[tuple, list[str]] = {}
        for member in self.live():
            for key in member.streams():
                out.setdefault(key, []).append(member.fwd.name)
        return out

    def wait_shared(self, expected: set[tuple], what: str, *, all_members_busy=True):
        """Wait until the live members' statuses split ``expected`` with no stream twice."""

        def shared():
            owners = self.owners()
            if set(owners) != expected or any(len(o) > 1 for o in owners.values()):
                return False
            if all_members_busy and not all(m.streams() for m in self.live()):
                return False
            return [(m.fwd.name, len(m.streams())) for m in self.live()]

        return wait_until(
            shared,
            timeout=SETTLE_TIMEOUT_S,
            what=what,
            seen=lambda: self._describe(expected),
            interval=0.2,
        )

    def _describe(self, expected) -> str:
        owners = self.owners()
        twice = [k for k, o in owners.items() if len(o) > 1]
        return (
            f"{len(owners)} listed of {len(expected)} expected, {len(set(expected) - set(owners))}"
            f" missing, {len(set(owners) - set(expected))} extra, {len(twice)} twice; per "
            f"member: {[(m.fwd.name, len(m.streams())) for m in self.live()]}"
        )


class Traffic:
    """Every data and ep01 message on the test's output topics, by stream."""

    def __init__(self, outputs, topics: list[str]):
        self.readers = {topic: outputs(topic) for topic in topics}

    def poll(self, budget_s: float = 2.0) -> None:
        """Read what arrived, for at most ``budget_s`` per topic (a flood must not hang us)."""
        for reader in self.readers.values():
            stop = time.monotonic() + budget_s
            while reader.poll(timeout_ms=20) and time.monotonic() < stop:
                pass

    def data(self, since_ms: int = 0) -> dict[tuple[str, str], list[tuple[int, float]]]:
        """(topic, PV) -> [(Kafka timestamp ms, value)] of f144/f142 since ``since_ms``."""
        out: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for topic, reader in self.readers.items():
            for record in reader.records:
                message = record.message
                if getattr(message, "schema", None) in ("f144", "f142"):
                    if record.kafka_timestamp_ms >= since_ms:
                        out.setdefault((topic, message.source), []).append(
                            (record.kafka_timestamp_ms, float(message.value))
                        )
        return out

    def connected(self, since_ms: int) -> set[tuple[str, str]]:
        """(topic, PV) that sent ep01 CONNECTED since ``since_ms``."""
        return {
            (topic, r.message.source)
            for topic, reader in self.readers.items()
            for r in reader.records
            if getattr(r.message, "schema", None) == "ep01"
            and r.message.status == "CONNECTED"
            and r.kafka_timestamp_ms >= since_ms
        }


def counter_streams(ioc, topics, count: int = COUNTER_COUNT) -> tuple[list[Stream], list[str]]:
    """``count`` counters (default all 100) × {CA f144, PVA f144, CA f142}, each kind on a
    topic of its own."""
    kinds = [("CA", "f144"), ("PVA", "f144"), ("CA", "f142")]
    names = [topics.new(f"{protocol.lower()}-{schema}") for protocol, schema in kinds]
    streams = [
        Stream(ioc.pv(suffix), schema, topic, protocol)
        for (protocol, schema), topic in zip(kinds, names, strict=True)
        for suffix in counter_suffixes(count)
    ]
    return streams, names


@pytest.fixture
def counters_running(ioc):
    epics_write(ioc.pv(COUNTER_RUN), 1)
    yield
    epics_write(ioc.pv(COUNTER_RUN), 0)


def wait_all_forward(traffic: Traffic, streams: list[Stream], since_ms: int, count: int, what):
    wanted = {(s.topic, s.channel) for s in streams}

    def short():
        traffic.poll()
        data = traffic.data(since_ms)
        return [k for k in wanted if len(data.get(k, ())) < count]

    wait_until(
        lambda: not short(),
        timeout=SETTLE_TIMEOUT_S,
        what=what,
        seen=lambda: f"{len(short())} streams short: {sorted(short())[:5]}",
        interval=0.5,
    )


def not_plus_one(data) -> dict:
    """Streams whose consecutive values do not go up by exactly 1."""
    bad = {}
    for key, points in data.items():
        values = [v for _, v in sorted(points)]
        steps = {b - a for a, b in zip(values, values[1:], strict=False)}
        if steps - {1.0}:
            bad[key] = values[:40]
    return bad


def longest_gap_s(data, keys, start_ms: int, end_ms: int) -> tuple[float, tuple | None]:
    """The longest time without a value of any of ``keys`` between ``start_ms`` and
    ``end_ms`` (a stream silent to the end counts up to ``end_ms``)."""
    worst, worst_key = 0.0, None
    for key in keys:
        times = [start_ms] + sorted(t for t, _ in data.get(key, ()) if start_ms <= t <= end_ms)
        times.append(end_ms)
        gap = max(b - a for a, b in zip(times, times[1:], strict=False)) / 1000
        if gap > worst:
            worst, worst_key = gap, key
    return worst, worst_key


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
