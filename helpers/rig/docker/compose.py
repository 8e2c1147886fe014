"""One Compose v2 project of the docker backend: its CLI calls, its labels, its logs.

Every part of the rig (the broker, each IOC, each forwarder) is its own project, named after
the run, so parts start and stop independently and two runs never share a container. Logs
are saved into logs/<run>/ before every stop and before ``down -v``, so they survive the
containers even when a start-up fails.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import subprocess
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from helpers.rig.docker.engine import compose_command
from helpers.rig.paths import REPO_ROOT, run_id
from helpers.rig.processes import _start_ticks

COMPOSE_DIR = REPO_ROOT / "compose"
SUITE_LABEL = "org.forwarder-rig.suite"
RUN_LABEL = "org.forwarder-rig.run"
# pid-starttime of the test process that owns a container: lets a clean tell a leftover of a
# crashed run from a container of a run still going on.
OWNER_LABEL = "org.forwarder-rig.owner"

_live: weakref.WeakSet[ComposeProject] = weakref.WeakSet()


class ComposeError(RuntimeError):
    """A Compose call failed; the message has its output."""


def owner_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{_start_ticks(pid)}"


def project_name(part: str) -> str:
    """A Compose project name (lower-case letters, digits, - and _) for ``part`` of this run."""
    raw = f"fwdrig-{run_id()}-{part}".lower()
    return re.sub(r"[^a-z0-9_-]+", "-", raw).strip("-_")


def escape(value: str) -> str:
    """``value`` safe from Compose's ${...} interpolation (a password may hold a '$')."""
    return value.replace("$", "$$")


class ComposeProject:
    """``docker compose -p NAME -f FILE...`` with the rig's environment and log saving."""

    def __init__(
        self,
        part: str,
        files: Sequence[Path],
        *,
        env: Mapping[str, str],
        log_paths: Mapping[str, Path],
        log_prefix: bool = False,
    ):
        self.name = project_name(part)
        self.files = [Path(f) for f in files]
        self.log_paths = dict(log_paths)  # service -> file its container log is saved to
        self.log_prefix = log_prefix  # each log line names its container (for replicas)
        self.env = {
            **os.environ,
            **env,
            "RIG_RUN_ID": run_id(),
            "RIG_OWNER": owner_id(),
            "COMPOSE_PROJECT_NAME": self.name,
        }
        self._up_once = False
        self._ids: dict[str, str] = {}  # service -> container id, until the next up or down

    def run(self, *args: str, timeout: float = 120.0, check: bool = True):
        argv = [*compose_command(), "-p", self.name]
        for file in self.files:
            argv += ["-f", str(file)]
        argv += list(args)
        try:
            done = subprocess.run(
                argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ComposeError(f"`{' '.join(argv)}` took over {timeout:.0f}s") from exc
        if check and done.returncode != 0:
            raise ComposeError(
                f"`{' '.join(argv)}` failed (exit {done.returncode}):\n"
                f"{(done.stdout + done.stderr).strip()[-4000:]}"
            )
        return done

    def up(
        self, service: str, *, wait: bool, timeout: float = 120.0, scale: int | None = None
    ) -> None:
        """``up -d`` of ``service`` (``scale``: that many replicas, ``--scale``)."""
        _live.add(self)
        self._up_once = True
        args = ["up", "-d", "--no-build", "--pull", "never"]
        if wait:
            args += ["--wait", "--wait-timeout", str(int(timeout))]
        if scale is not None:
            args += ["--scale", f"{service}={scale}"]
        self._ids.pop(service, None)
        self.run(*args, service, timeout=timeout + 30)

    def stop(self, service: str, timeout_s: int = 30) -> None:
        try:
            self.run("stop", "-t", str(timeout_s), service, timeout=timeout_s + 30)
        finally:
            self.save_logs()

    def container_ids(self, service: str) -> list[str]:
        """The ids of every container (each replica) of ``service``, running or not."""
        if not self._up_once:
            return []
        return self.run("ps", "-a", "-q", service, check=False).stdout.split()

    def container_id(self, service: str) -> str | None:
        if not self._up_once:
            return None
        if service not in self._ids:
            ids = self.container_ids(service)
            if not ids:
                return None
            self._ids[service] = ids[0]
        return self._ids[service]

    def state(self, service: str) -> dict:
        """The container's .State (Running, Pid, ExitCode, Health...), {} if it has none."""
        cid = self.container_id(service)
        return inspect(cid).get("State", {}) if cid is not None else {}

    def logs(self, service: str, lines: int | None = None) -> str:
        if not self._up_once:
            return ""
        args = ["logs", "--no-color", "--timestamps"]
        if not self.log_prefix:
            args.append("--no-log-prefix")
        if lines is not None:
            args += ["--tail", str(lines)]
        done = self.run(*args, service, check=False, timeout=60)
        return done.stdout + done.stderr

    def save_logs(self) -> None:
        """Write each service's whole container log to its file (best effort)."""
        for service, path in self.log_paths.items():
            try:
                text = self.logs(service)
            except ComposeError as exc:
                text = f"(could not read the log of {service}: {exc})\n"
            if text:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)

    def down(self) -> None:
        """Save the logs, then remove the containers and volumes; always both."""
        if not self._up_once:
            return
        try:
            self.save_logs()
        finally:
            self.run("down", "-v", "--remove-orphans", "-t", "20", timeout=120, check=False)
            self._up_once = False
            self._ids.clear()
            _live.discard(self)


def inspect(container: str) -> dict:
    """``docker inspect`` of one container (State, RestartCount, Config...), {} if it is gone."""
    done = subprocess.run(
        ["docker", "inspect", "--format", "{{json .}}", container],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else {}


def down_all() -> None:
    """At exit: take down every project this interpreter started and did not take down."""
    for project in list(_live):
        try:
            project.down()
        except Exception:  # noqa: BLE001 - best effort at exit, keep going with the others
            pass


atexit.register(down_all)
