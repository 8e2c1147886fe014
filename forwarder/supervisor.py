"""``--workers N``: N group members as child processes of one parent, which restarts any that
dies. The members share the streams through the group (``--group``), so while a member is
being restarted the others forward its streams; the parent itself forwards nothing.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

POLL_S = 0.5
RESTART_MIN_INTERVAL_S = 2.0  # a member that keeps dying at start is not restarted in a spin
STOP_BOUND_S = 15.0


def member_command(argv: Sequence[str], index: int, service_id: str) -> list[str]:
    """The command line of member ``index``: the parent's, as one worker with its own id."""
    return [
        sys.executable,
        "-m",
        "forwarder",
        *argv,
        "--workers",
        "1",
        "--service-id",
        f"{service_id}-{index}",
    ]


class Supervisor:
    """Keeps ``len(commands)`` child processes running until ``stop`` is set."""

    def __init__(
        self,
        commands: Sequence[list[str]],
        *,
        spawn: Callable[[list[str]], subprocess.Popen] = subprocess.Popen,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._commands = list(commands)
        self._spawn = spawn
        self._clock = clock
        self.children: list[subprocess.Popen | None] = [None] * len(self._commands)
        self._started_at = [float("-inf")] * len(self._commands)
        self.restarts = 0

    def run(self, stop: threading.Event) -> int:
        try:
            while not stop.is_set():
                self._keep_running()
                stop.wait(POLL_S)
        finally:
            self._stop_all()
        return 0

    def _keep_running(self) -> None:
        for i, child in enumerate(self.children):
            if child is not None and child.poll() is None:
                continue
            if child is not None:
                if self._clock() - self._started_at[i] < RESTART_MIN_INTERVAL_S:
                    continue
                log.error("Member %d (pid %d) exited with %s; restarting it", i, child.pid,
                          child.returncode)
                self.restarts += 1
            try:
                self.children[i] = self._spawn(self._commands[i])
                self._started_at[i] = self._clock()
                log.info("Started member %d (pid %d)", i, self.children[i].pid)
            except OSError:
                log.exception("Could not start member %d; retrying", i)

    def _stop_all(self) -> None:
        """SIGTERM every member (each leaves the group and flushes), then SIGKILL stragglers."""
        live = [c for c in self.children if c is not None and c.poll() is None]
        for child in live:
            child.send_signal(signal.SIGTERM)
        deadline = self._clock() + STOP_BOUND_S
        for child in live:
            try:
                child.wait(max(0.1, deadline - self._clock()))
            except subprocess.TimeoutExpired:
                log.error("Member pid %d did not stop within %.0fs; killing it", child.pid,
                          STOP_BOUND_S)
                child.kill()
                child.wait()


def run_workers(argv: Sequence[str], workers: int, service_id: str) -> int:
    """Run ``workers`` members until SIGTERM/SIGINT."""
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("Received %s; stopping the members", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    commands = [member_command(argv, i, service_id) for i in range(workers)]
    log.info("Supervising %d forwarder group members", workers)
    return Supervisor(commands).run(stop)
