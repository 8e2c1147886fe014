"""x5f2 status: who the forwarder is, every ~4 s, and right after each command."""

from __future__ import annotations

import os
import socket

from helpers.flatbuffers_helpers import describe
from integration_tests.forwarder_fixtures import Stream

STATUS_INTERVAL_MS = 4000
# A status "right after" a command arrives well within this; the periodic one only every 4 s.
PROMPT_S = 1.5


def _same_host_pid(status_pid: int, forwarder_pid: int | None) -> bool | None:
    """True/False if the status pid can be checked on this machine, None if it cannot (the
    forwarder runs elsewhere, e.g. in a container)."""
    if forwarder_pid is None or not os.path.exists(f"/proc/{status_pid}"):
        return None
    if status_pid == forwarder_pid:
        return True
    try:  # a launcher script may exec or fork: the forwarder is then in its process group
        return os.getpgid(status_pid) == forwarder_pid
    except ProcessLookupError:
        return None


def test_status_names_software_service_host_pid_and_interval(forwarder, control):
    record = control.wait_for_status(timeout=15.0, what="a status message")
    status = record.status
    assert status.software_name.strip(), describe(status)
    assert status.software_version.strip(), describe(status)
    assert status.service_id == forwarder.service_id, describe(status)
    assert status.update_interval == STATUS_INTERVAL_MS, f"update_interval {status.update_interval}"
    assert status.process_id > 0
    local = _same_host_pid(status.process_id, forwarder.pid)
    if local is not None:
        assert local, f"status pid {status.process_id} is not the forwarder's ({forwarder.pid})"
        assert status.host_name == socket.gethostname(), describe(status)
    else:
        assert status.host_name.strip(), describe(status)
    assert isinstance(status.status, dict) and status.streams() == [], status.status_json


def test_status_is_sent_about_every_four_seconds(forwarder, control):
    control.wait_for_status(
        lambda r: len(control.statuses) >= 4,
        timeout=4 * STATUS_INTERVAL_MS / 1000 + 10,
        what="four status messages",
    )
    stamps = [r.kafka_timestamp_ms for r in control.statuses[:4]]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(3000 <= g <= 5500 for g in gaps), f"gaps between statuses: {gaps} ms"


def test_a_status_follows_each_command_at_once(ioc, forwarder, control, topics):
    topic = topics.new("prompt")
    a = Stream(ioc.pv("DOUBLE"), "f144", topic)
    b = Stream(ioc.pv("LONG"), "f144", topic, "PVA")
    c = Stream(ioc.pv("SHORT"), "f142", topic)
    steps = [
        ("ADD a", lambda: control.add([a]), {a}),
        ("ADD b", lambda: control.add([b]), {a, b}),
        ("REMOVE a", lambda: control.remove(channel=a.channel), {b}),
        ("REPLACE by c", lambda: control.replace([c]), {c}),
        ("REMOVEALL", control.remove_all, set()),
        ("ADD a, c", lambda: control.add([a, c]), {a, c}),
    ]
    late = []
    for label, command, expected in steps:
        control.poll_status(timeout_ms=0)
        sent_at = command()
        want = {s.key for s in expected}
        record = control.wait_for_status(
            lambda r, w=want: r.streams == w,
            timeout=15.0,
            since_ms=int(sent_at * 1000) - 50,
            what=f"a status after {label}",
        )
        delay = record.kafka_timestamp_ms / 1000 - sent_at
        if delay > PROMPT_S:
            late.append(f"{label}: {delay:.2f}s")
    assert not late, f"status not sent right after the command (> {PROMPT_S}s): {late}"
