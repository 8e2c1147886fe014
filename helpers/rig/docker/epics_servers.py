"""The docker backend's EPICS servers: ioc/run_ioc.py and ioc/table_server.py in the IOC
image (services ``ioc`` and ``tables`` of compose/ioc.yml), ready by the same probes as the
local backend's processes (``helpers.rig.readiness``)."""

from __future__ import annotations

import itertools
from pathlib import Path

from helpers.rig import ioc_claims
from helpers.rig.api import EpicsNetwork
from helpers.rig.docker.compose import COMPOSE_DIR, ComposeProject, escape
from helpers.rig.docker.images import IOC_IMAGE
from helpers.rig.paths import part_log_path
from helpers.rig.processes import tail
from helpers.rig.readiness import wait_ioc_ready, wait_table_server_ready

START_TIMEOUT = 30.0

_numbers = itertools.count(1)


class ComposeEpicsServer:
    """Life cycle of an EPICS server container; subclasses name the service and say how it
    answers (``_wait_ready``)."""

    kind = "epics-server"
    service = ""

    def __init__(self, prefix: str, network: EpicsNetwork):
        self.prefix = prefix
        self.network = network
        self.name = f"{self.kind}-{prefix.rstrip(':')}-{network.ca_server_port}"
        self._project = ComposeProject(
            f"{self.kind}-{next(_numbers)}",
            [COMPOSE_DIR / "ioc.yml"],
            env={"IOC_IMAGE": IOC_IMAGE, "IOC_PREFIX": escape(prefix), **network.server_env()},
            log_paths={self.service: part_log_path(self.name)},
        )

    def pv(self, suffix: str) -> str:
        return self.prefix + suffix

    @property
    def log_path(self) -> Path:
        return self._project.log_paths[self.service]

    def log_tail(self, lines: int = 40) -> str:
        return self._project.logs(self.service, lines) or tail(self.log_path, lines)

    def is_running(self) -> bool:
        return bool(self._project.state(self.service).get("Running"))

    @property
    def pid(self) -> int | None:
        return self._project.state(self.service).get("Pid") or None

    @property
    def returncode(self) -> int | None:
        state = self._project.state(self.service)
        return None if not state or state.get("Running") else state.get("ExitCode")

    def _alive_or_raise(self) -> None:
        state = self._project.state(self.service)
        if not state.get("Running"):
            raise RuntimeError(f"container exited with code {state.get('ExitCode')}")

    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    def start(self) -> None:
        try:
            self._project.up(self.service, wait=True, timeout=START_TIMEOUT)
            self._wait_ready(START_TIMEOUT)
        except Exception as err:
            self._project.save_logs()
            text = self.log_tail()
            self.close()
            raise RuntimeError(
                f"{self.name} did not become ready: {err}\n--- log tail:\n{text}"
            ) from err

    def stop(self) -> None:
        self._project.stop(self.service, timeout_s=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self._project.down()


class DockerIoc(ComposeEpicsServer):
    """ioc/run_ioc.py with ioc/test.db under ``prefix`` over CA and PVA; one per
    EpicsNetwork, as on the local backend (see ``ioc_claims``)."""

    kind = "ioc"
    service = "ioc"

    def start(self) -> None:
        ioc_claims.claim(self.network, self)
        super().start()

    def stop(self) -> None:
        super().stop()
        ioc_claims.release(self.network, self)

    def close(self) -> None:
        super().close()
        ioc_claims.release(self.network, self)

    def _wait_ready(self, timeout: float) -> None:
        wait_ioc_ready(self.network, self.prefix, timeout=timeout, check_alive=self._alive_or_raise)


class DockerTableServer(ComposeEpicsServer):
    """ioc/table_server.py under ``prefix``, PVA only."""

    kind = "tables"
    service = "tables"

    def _wait_ready(self, timeout: float) -> None:
        wait_table_server_ready(
            self.network, self.prefix, timeout=timeout, check_alive=self._alive_or_raise
        )
