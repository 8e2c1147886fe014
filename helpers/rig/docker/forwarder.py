"""The docker backend's forwarder: the forwarder image run with a spec's arguments, the same
arguments as the local backend's process (``forwarder_args``)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path

from helpers.polling import WaitTimeout, wait_until
from helpers.rig.api import EpicsNetwork, ForwarderSpec, RigTimeout
from helpers.rig.docker.compose import COMPOSE_DIR, ComposeProject, escape
from helpers.rig.forwarder_args import forwarder_args
from helpers.rig.paths import CONFIG_FILES, LOG_DIR, part_log_path, run_id
from helpers.rig.processes import make_temp_dir, remove_temp_dir, tail

_numbers = itertools.count(1)


class DockerForwarder:
    """The forwarder image run with a spec's arguments (compose/forwarder.yml + an override).

    Its own log (``--log-file``) is written through the logs/ mount, live; the container's
    stdout/stderr is saved beside it as <name>.stdout.log.
    """

    def __init__(self, spec: ForwarderSpec, *, image: str, bootstrap: str,
                 sasl_bootstrap: str | None, network: EpicsNetwork, label: str = "forwarder"):
        self.spec = spec
        self.name = f"{label}-{next(_numbers)}"
        self.service_id = f"{self.name}-{run_id()}"
        self._log_path = part_log_path(self.name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        log_in_container = f"/logs/{self._log_path.relative_to(LOG_DIR).as_posix()}"
        self.argv = forwarder_args(
            spec,
            plain_bootstrap=bootstrap,
            sasl_bootstrap=sasl_bootstrap,
            config_dir="/config-files",
            log_file=log_in_container,
            service_id=self.service_id,
        )
        self._dir = make_temp_dir(self.name)
        override = {
            "services": {
                "forwarder": {
                    "command": [escape(a) for a in self.argv],
                    "environment": {
                        **network.client_env(),
                        "FORWARDER_LOG_FILE": escape(log_in_container),
                    },
                }
            }
        }
        # JSON is YAML: no YAML library needed to write a Compose file.
        (self._dir / "override.yml").write_text(json.dumps(override, indent=1))
        self._project = ComposeProject(
            self.name,
            [COMPOSE_DIR / "forwarder.yml", self._dir / "override.yml"],
            env={
                "FORWARDER_IMAGE": image,
                "RIG_CONFIG_DIR": str(CONFIG_FILES),
                "RIG_LOG_DIR": str(LOG_DIR),
                "RIG_UID": str(os.getuid()),
                "RIG_GID": str(os.getgid()),
            },
            log_paths={"forwarder": LOG_DIR / run_id() / f"{self.name}.stdout.log"},
        )

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def pid(self) -> int | None:
        """The forwarder's pid (the container shares the host's pid namespace)."""
        return self._project.state("forwarder").get("Pid") or None

    def start(self) -> None:
        """Start the container (no wait for health: a forwarder may exit on purpose; the
        fixtures wait for its first status message)."""
        try:
            self._project.up("forwarder", wait=False, timeout=60)
        except Exception:
            self._project.save_logs()
            raise

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        self._project.stop("forwarder", timeout_s=15)

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return bool(self._project.state("forwarder").get("Running"))

    def send_signal(self, sig: int) -> None:
        cid = self._project.container_id("forwarder")
        if cid is not None:
            subprocess.run(["docker", "kill", "--signal", str(int(sig)), cid],
                           capture_output=True, timeout=30, check=False)

    def wait_exit(self, timeout: float) -> int:
        """Exit code once the forwarder exits by itself (128+N when signal N ended it);
        RigTimeout if it still runs."""
        state: dict = {}

        def exited() -> bool:
            nonlocal state
            state = self._project.state("forwarder")
            return bool(state) and not state.get("Running")

        try:
            wait_until(exited, timeout=timeout, interval=0.2, what=f"{self.name} to exit")
        except WaitTimeout as exc:
            raise RigTimeout(str(exc)) from None
        self._project.save_logs()
        return int(state.get("ExitCode", -1))

    def log_tail(self, lines: int = 40) -> str:
        own = tail(self._log_path, lines)
        stdout = self._project.logs("forwarder", lines)
        return f"{own}\n--- stdout/stderr ---\n{stdout}" if stdout.strip() else own

    def close(self) -> None:
        try:
            self._project.down()
        finally:
            remove_temp_dir(self._dir)
