"""--workers: the parent keeps N member processes alive and stops them all on request."""

from __future__ import annotations

import os
import signal
import sys
import threading

from forwarder import supervisor as supervisor_module
from forwarder.supervisor import Supervisor, member_command
from helpers.polling import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_each_member_runs_as_one_worker_with_its_own_service_id():
    command = member_command(["--group", "g", "--workers", "3"], 2, "svc")
    assert command[-4:] == ["--workers", "1", "--service-id", "svc-2"]


def test_a_member_that_dies_is_restarted_and_all_stop_together(monkeypatch):
    monkeypatch.setattr(supervisor_module, "RESTART_MIN_INTERVAL_S", 0.0)
    monkeypatch.setattr(supervisor_module, "POLL_S", 0.05)
    sup = Supervisor([SLEEPER, SLEEPER])
    stop = threading.Event()
    thread = threading.Thread(target=sup.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: all(sup.children), timeout=10, what="both members started")
        first = sup.children[0]
        os.kill(first.pid, signal.SIGKILL)
        wait_until(
            lambda: sup.children[0] is not first and sup.children[0].poll() is None,
            timeout=10,
            what="the killed member restarted",
        )
        assert sup.restarts == 1
    finally:
        stop.set()
        thread.join(30)
    assert all(child.poll() is not None for child in sup.children)
