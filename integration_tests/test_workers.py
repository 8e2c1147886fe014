"""``--workers N`` (issue 10): one command starts N group members under a parent that
restarts any member that dies, so one host uses all its cores and keeps forwarding.

The members share one status topic; each status names its member, so the newest status of
each member says what that member forwards.
"""

from __future__ import annotations

import signal
import time
import uuid

import psutil
import pytest

from helpers.forwarder_control import Stream
from helpers.polling import wait_until
from helpers.pvs import COUNTER_RUN, counter_suffixes
from integration_tests.forwarder_fixtures import epics_write

WORKERS = 2
COUNTERS = 20
# The group's failover bound (README "Scaling out") with room for a contended machine.
SETTLE_TIMEOUT_S = 60.0


def _members(fwd) -> list[psutil.Process]:
    """The parent's member processes (the forwarder the rig started is the parent)."""
    try:
        return psutil.Process(fwd.pid).children()
    except psutil.NoSuchProcess:
        return []


def _wait_every_pv_forwards(reader, names: list[str], since_ms: int, what: str) -> None:
    def silent() -> list[str]:
        reader.poll()
        seen = {
            r.message.source
            for r in reader.records
            if r.kafka_timestamp_ms >= since_ms and getattr(r.message, "schema", None) == "f144"
        }
        return [n for n in names if n not in seen]

    wait_until(
        lambda: not silent(),
        timeout=SETTLE_TIMEOUT_S,
        what=what,
        seen=lambda: f"silent: {silent()[:5]}",
        interval=0.5,
    )


@pytest.mark.extension
def test_workers_share_the_streams_and_a_killed_member_is_restarted_and_takes_its_share(
    ioc, forwarder_factory, control_factory, outputs, topics
):
    fwd = forwarder_factory(
        "forwarder.ini",
        storage_topic=topics.new("storage"),
        extra_args=("--group", f"w{uuid.uuid4().hex[:6]}", "--workers", str(WORKERS)),
    )
    control = control_factory(fwd)
    topic = topics.new("counters")
    reader = outputs(topic)
    names = [ioc.pv(suffix) for suffix in counter_suffixes(COUNTERS)]
    streams = [Stream(name, "f144", topic) for name in names]
    expected = {s.key for s in streams}
    epics_write(ioc.pv(COUNTER_RUN), 1)
    try:
        started = int(time.time() * 1000)
        control.add(streams)
        shares = control.wait_members_share(
            expected,
            WORKERS,
            since_ms=started,
            timeout=SETTLE_TIMEOUT_S,
            what=f"{WORKERS} members sharing the streams",
        )
        members = _members(fwd)
        assert len(members) == WORKERS, f"the parent runs {len(members)} members"

        victim = members[0]
        victim.send_signal(signal.SIGKILL)
        killed = int(time.time() * 1000)
        wait_until(
            lambda: victim.pid not in {p.pid for p in _members(fwd)}
            and len(_members(fwd)) == WORKERS,
            timeout=SETTLE_TIMEOUT_S,
            what=f"the parent to replace member {victim.pid}",
            seen=lambda: [p.pid for p in _members(fwd)],
        )
        after = control.wait_members_share(
            expected,
            WORKERS,
            since_ms=killed,
            timeout=SETTLE_TIMEOUT_S,
            what="the restarted member back in the group, sharing again",
        )
        assert set(after) - set(shares), "no member with a new id after the restart"
        mark = int(time.time() * 1000)
        _wait_every_pv_forwards(reader, names, mark, "every counter forwarding after the restart")
    finally:
        epics_write(ioc.pv(COUNTER_RUN), 0)
