"""compose/forwarder-group.yml (issue 10): ``docker compose up --scale forwarder=3`` runs a
forwarder group the way README "Scaling out" tells a user to, and the group keeps its
promises: the replicas share the streams, each forwarded by one of them, and when one
replica's process dies its streams resume within the failover bound while the engine
restarts it (``restart: unless-stopped``) and it takes a share again.

The replicas are configured by environment variables only, as the README shows, and all
send status to one topic, so statuses are told apart by their ``member_id``; each service id
is its replica's pid (host pid namespace), which ties a member to its container.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from helpers.forwarder_control import StatusRecord, now_ms
from helpers.polling import wait_until
from helpers.pvs import COUNTER_RUN
from helpers.rig.api import ForwarderSpec
from helpers.rig.docker.compose import (
    COMPOSE_DIR,
    OWNER_LABEL,
    RUN_LABEL,
    SUITE_LABEL,
    ComposeProject,
    inspect,
    owner_id,
)
from helpers.rig.forwarder_args import kafka_uri
from helpers.rig.paths import LOG_DIR, run_id
from integration_tests.forwarder_fixtures import epics_write
from integration_tests.group_fixtures import (
    FAILOVER_ALLOWED_S,
    Traffic,
    counter_streams,
    longest_gap_s,
    not_plus_one,
    wait_all_forward,
)

# Three forwarder containers and 30 counters at 10 Hz: one such test at a time.
pytestmark = [pytest.mark.extension, pytest.mark.docker, pytest.mark.xdist_group("machine_load")]

SERVICE = "forwarder"
REPLICAS = 3
COUNTERS = 10  # × {CA f144, PVA f144, CA f142}: 30 streams
START_TIMEOUT_S = 60.0  # 3 containers starting, restoring and joining on a busy 2-core machine
SETTLE_TIMEOUT_S = 60.0


class ComposeGroup:
    """The replicas of compose/forwarder-group.yml: a Compose project of the suite's own
    (ComposeProject: the suite's labels, so ``python -m helpers.rig.docker.clean`` removes
    it after a crash), configured by the environment variables the README names."""

    def __init__(self, image: str, kafka, network, topics):
        self.group = f"g{uuid.uuid4().hex[:6]}"
        # What a ForwarderControl (``control_factory``) needs: the topics of the group.
        self.spec = ForwarderSpec(
            ini_file=None,
            config_topic=topics.new("config"),
            status_topic=topics.new("status"),
            storage_topic=topics.new("storage"),
        )
        broker = kafka.forwarder_bootstrap
        self._log_path = LOG_DIR / run_id() / f"compose-group-{self.group}.stdout.log"
        self.project = ComposeProject(
            f"compose-group-{self.group}",
            [COMPOSE_DIR / "forwarder-group.yml"],
            env={
                **network.client_env(),  # the rig's EPICS ports, as a user's shell has them
                "FORWARDER_IMAGE": image,
                "RIG_UID": str(os.getuid()),
                "RIG_GID": str(os.getgid()),
                "OUTPUT_BROKER": kafka_uri(broker, None, None),
                "CONFIG_TOPIC": kafka_uri(broker, self.spec.config_topic, None),
                "STATUS_TOPIC": kafka_uri(broker, self.spec.status_topic, None),
                "STORAGE_TOPIC": kafka_uri(broker, self.spec.storage_topic, None),
                "FORWARDER_GROUP": self.group,
            },
            log_paths={SERVICE: self._log_path},
            log_prefix=True,  # the replicas' lines interleave: each names its container
        )

    def up(self, replicas: int) -> None:
        """``docker compose -p ... -f compose/forwarder-group.yml up -d --scale forwarder=N``
        (and ``--wait``: until every replica is running and healthy)."""
        self.project.up(SERVICE, wait=True, scale=replicas, timeout=START_TIMEOUT_S)

    def replicas(self) -> dict[str, dict]:
        """Container id -> its ``docker inspect`` (State, RestartCount...), every replica."""
        return {cid: inspect(cid) for cid in self.project.container_ids(SERVICE)}

    def by_pid(self) -> dict[str, str]:
        """Pid of each running replica's forwarder (its default service id) -> container id."""
        return {
            str(info["State"]["Pid"]): cid
            for cid, info in self.replicas().items()
            if info.get("State", {}).get("Running")
        }

    @property
    def log_path(self) -> Path:
        return self._log_path

    def log_tail(self, lines: int = 40) -> str:
        return self.project.logs(SERVICE, lines)

    def down(self) -> None:
        self.project.down()


@pytest.fixture
def compose_group(pytestconfig, rig, kafka, ioc, topics, watch):
    """The group's Compose project, not started; taken down (logs saved) after the test."""
    if pytestconfig.getoption("--local-build"):
        pytest.skip("--local-build: compose/forwarder-group.yml runs the forwarder image")
    group = ComposeGroup(rig.forwarder_image(), kafka, ioc.network, topics)
    watch("compose group", group)
    try:
        yield group
    finally:
        group.down()


def _members_in_group(control, group: ComposeGroup, since_ms: int):
    """The newest status of each member since ``since_ms`` when exactly the running
    replicas report, each in ``group`` with a member_id and service id of its own."""
    newest = control.newest_by_member(since_ms)
    service_ids = {r.status.service_id for r in newest.values()}
    in_group = all((r.status.status or {}).get("group") == group.group for r in newest.values())
    if len(newest) == REPLICAS and in_group and service_ids == set(group.by_pid()):
        return newest
    return None


def _reporting(control, since_ms: int) -> dict[str, dict]:
    """Service id -> group and member_id of its newest status since ``since_ms`` (members
    or not)."""
    control.poll_status()
    newest = {r.status.service_id: r for r in control.statuses if r.kafka_timestamp_ms >= since_ms}
    return {
        service: {key: (r.status.status or {}).get(key) for key in ("group", "member_id")}
        for service, r in newest.items()
    }


def _shares(statuses: dict[str, StatusRecord]) -> dict[str, int]:
    return {r.status.service_id: len(r.streams) for r in statuses.values()}


def test_compose_scale_3_runs_a_group_that_shares_the_streams_and_outlives_a_crash(
    compose_group, ioc, control_factory, outputs, topics
):
    group = compose_group
    control = control_factory(group)
    started = now_ms()
    group.up(REPLICAS)
    replicas = group.replicas()
    assert len(replicas) == REPLICAS, f"compose runs {len(replicas)} replicas"
    # The suite's labels: `python -m helpers.rig.docker.clean` removes them after a crash.
    suite = {SUITE_LABEL: "1", RUN_LABEL: run_id(), OWNER_LABEL: owner_id()}
    for cid, info in replicas.items():
        labels = info["Config"]["Labels"] or {}
        assert suite.items() <= labels.items(), f"replica {cid[:12]} is labelled {labels}"
    joined = wait_until(
        lambda: _members_in_group(control, group, started),
        timeout=START_TIMEOUT_S,
        what=f"a status of each of the {REPLICAS} replicas as a member of group {group.group}",
        seen=lambda: _reporting(control, started),
        interval=0.5,
    )
    print(f"joined: {REPLICAS} members (pid: member_id) {_ids(joined)}")

    streams, names = counter_streams(ioc, topics, COUNTERS)
    everything = {s.key for s in streams}
    traffic = Traffic(outputs, names)
    epics_write(ioc.pv(COUNTER_RUN), 1)
    try:
        control.add(streams)
        shares = control.wait_members_share(
            everything,
            REPLICAS,
            since_ms=started,
            timeout=SETTLE_TIMEOUT_S,
            what=f"the {REPLICAS} replicas sharing all {len(streams)} streams",
        )
        print("shared (service id: streams):", _shares(shares))
        steady = now_ms()
        wait_all_forward(traffic, streams, steady, 10, "10 values of every stream")
        traffic.poll()
        bad = not_plus_one(traffic.data(steady))
        assert not bad, f"{len(bad)} streams did not go up by exactly 1: {list(bad.items())[:3]}"

        # A crash: the victim's process dies by SIGKILL (not `docker kill`, which the engine
        # counts as a stop and does not restart).
        victim = next(r for r in shares.values() if r.streams)
        container = group.by_pid()[victim.status.service_id]
        before = inspect(container)
        victim_keys = {(s.topic, s.channel) for s in streams if s.key in victim.streams}
        killed_ms = now_ms()
        os.kill(int(victim.status.service_id), signal.SIGKILL)

        # Its streams resume on a live member within the failover bound.
        wait_all_forward(traffic, streams, killed_ms, 5, "5 values of every stream since the kill")
        resumed_ms = now_ms()
        traffic.poll()
        gap, worst = longest_gap_s(
            traffic.data(killed_ms - 2000), victim_keys, killed_ms, resumed_ms
        )
        print(f"failover: {len(victim_keys)} streams moved; longest gap {gap:.1f} s ({worst})")
        assert gap <= FAILOVER_ALLOWED_S, f"a moved stream was silent for {gap:.1f} s: {worst}"
        assert victim_keys <= traffic.connected(killed_ms), (
            "streams of the killed replica without ep01 CONNECTED from their new owner"
        )

        # The engine starts the replica again; it rejoins as a new member and takes a share.
        restarted = wait_until(
            lambda: _restarted(container, before),
            timeout=SETTLE_TIMEOUT_S,
            what=f"the engine to restart the killed replica {container[:12]}",
            seen=lambda: _brief(inspect(container)),
            interval=0.2,
        )
        after = control.wait_members_share(
            everything,
            REPLICAS,
            since_ms=killed_ms,
            timeout=SETTLE_TIMEOUT_S,
            what="the 2 survivors and the restarted replica sharing all the streams",
        )
        new_pid = str(restarted["State"]["Pid"])
        moved_to = {r.status.service_id: len(r.streams & victim.streams) for r in after.values()}
        print(
            f"restart: replica {container[:12]} pid {victim.status.service_id} -> {new_pid} "
            f"(restart count {restarted['RestartCount']}); shared: {_shares(after)}; the "
            f"killed member's streams now on: {moved_to}"
        )
        assert new_pid in {r.status.service_id for r in after.values()}, (
            f"the restarted replica (pid {new_pid}) forwards nothing: {_shares(after)}"
        )
        assert victim.status.status["member_id"] not in after, "the killed member still reports"
        settled = now_ms()
        wait_all_forward(traffic, streams, settled, 5, "5 values of every stream after the rejoin")
        traffic.poll()
        every = {(s.topic, s.channel) for s in streams}
        gap, worst = longest_gap_s(traffic.data(killed_ms - 2000), every, killed_ms, now_ms())
        print(f"crash to settled: longest gap of any stream {gap:.1f} s ({worst})")
        assert gap <= FAILOVER_ALLOWED_S, f"a stream was silent for {gap:.1f} s: {worst}"
        bad = not_plus_one(traffic.data(settled))
        assert not bad, f"after the rejoin, values not +1: {list(bad.items())[:3]}"
    finally:
        epics_write(ioc.pv(COUNTER_RUN), 0)


def _restarted(container: str, before: dict) -> dict | None:
    """The replica's inspect once the engine has restarted it (a new process running)."""
    now = inspect(container)
    state = now.get("State", {})
    if now.get("RestartCount", 0) > before["RestartCount"] and state.get("Running"):
        return now
    return None


def _brief(info: dict) -> dict:
    state = info.get("State", {})
    keys = ("Status", "Running", "Pid", "ExitCode")
    return {"RestartCount": info.get("RestartCount"), **{k: state.get(k) for k in keys}}


def _ids(statuses: dict[str, StatusRecord]) -> dict[str, str]:
    return {r.status.service_id: member for member, r in statuses.items()}
