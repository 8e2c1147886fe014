"""What the group tests share: members started with one config topic and ``--group``, the
traffic on their output topics by stream, and the checks on it (every value +1, the
longest silence of a stream). The compose group test uses them too."""

from __future__ import annotations

import time
import uuid

from helpers.forwarder_control import Stream, split_exactly
from helpers.polling import wait_until
from helpers.pvs import COUNTER_COUNT, counter_suffixes

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
            live = self.live()
            shares = [m.streams() for m in live]
            if not split_exactly(shares, expected, every_member_busy=all_members_busy):
                return False
            return [(m.fwd.name, len(share)) for m, share in zip(live, shares, strict=True)]

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
    """Streams whose consecutive values do not go up by exactly 1: key -> the first few
    steps that do not, as (value, next value, Kafka timestamp in ms of the next)."""
    bad = {}
    for key, points in data.items():
        points = sorted(points)
        wrong = [
            (a, b, t) for (_, a), (t, b) in zip(points, points[1:], strict=False) if b - a != 1.0
        ]
        if wrong:
            bad[key] = wrong[:5]
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
