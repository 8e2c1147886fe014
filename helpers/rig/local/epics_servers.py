"""The local backend's EPICS servers as processes: the softioc IOC and the NTTable server.

start() returns only once the PVs answer (the probes of ``helpers.rig.readiness``: the IOC
over both CA and PVA), polling with a deadline; on timeout or an early exit it raises with
the tail of the process log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from helpers.rig import ioc_claims
from helpers.rig.api import EpicsNetwork
from helpers.rig.paths import IOC_DIR, REPO_ROOT
from helpers.rig.processes import ManagedProcess
from helpers.rig.readiness import wait_ioc_ready, wait_table_server_ready

START_TIMEOUT = 30.0


class EpicsServerProcess:
    """Shared lifecycle of a local EPICS server process; subclasses say how it answers
    (``_wait_ready``)."""

    kind = "epics-server"

    def __init__(self, prefix: str, network: EpicsNetwork, argv: list[str]):
        self.prefix = prefix
        self.network = network
        # Port in the name: two rigs with the same prefix get separate logs.
        self.name = f"{self.kind}-{prefix.rstrip(':')}-{network.ca_server_port}"
        env = {**os.environ, **network.server_env()}
        self._process = ManagedProcess(self.name, argv, env=env, cwd=REPO_ROOT)

    def pv(self, suffix: str) -> str:
        return self.prefix + suffix

    @property
    def log_path(self) -> Path:
        return self._process.log_path

    def log_tail(self, lines: int = 40) -> str:
        return self._process.tail(lines)

    def is_running(self) -> bool:
        return self._process.is_running()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """Exit code of the last run (None while running or never started)."""
        return self._process.returncode

    def start(self) -> None:
        self._process.start()
        try:
            self._wait_ready(START_TIMEOUT)
        except Exception as err:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(
                f"{self.name} did not become ready: {err}\n--- log tail:\n{tail}"
            ) from err

    def stop(self) -> None:
        code = self._process.stop()
        if code not in (None, 0):
            # Not fatal for the test, but the log should say so.
            with open(self.log_path, "a") as log:
                log.write(f"=== {self.name} exited with code {code}\n")

    def restart(self) -> None:
        self.stop()
        self.start()

    def _alive_or_raise(self) -> None:
        if not self._process.is_running():
            raise RuntimeError(f"process exited with code {self._process.returncode}")

    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError


class LocalIoc(EpicsServerProcess):
    """pythonSoftIOC serving ioc/test.db under ``prefix`` over CA and PVA.

    Only one IOC per EpicsNetwork may run at a time (see ``ioc_claims``): starting a second
    one raises.
    """

    kind = "ioc"

    def __init__(self, prefix: str, network: EpicsNetwork, db: Path = IOC_DIR / "test.db"):
        argv = [sys.executable, str(IOC_DIR / "run_ioc.py"), "--prefix", prefix, "--db", str(db)]
        super().__init__(prefix, network, argv)

    def start(self) -> None:
        ioc_claims.claim(self.network, self)
        super().start()

    def stop(self) -> None:
        super().stop()
        ioc_claims.release(self.network, self)

    def _wait_ready(self, timeout: float) -> None:
        wait_ioc_ready(self.network, self.prefix, timeout=timeout, check_alive=self._alive_or_raise)


class LocalTableServer(EpicsServerProcess):
    """The p4p NTTable server (ioc/table_server.py) under ``prefix``, PVA only."""

    kind = "tables"

    def __init__(self, prefix: str, network: EpicsNetwork):
        argv = [sys.executable, str(IOC_DIR / "table_server.py"), "--prefix", prefix]
        super().__init__(prefix, network, argv)

    def _wait_ready(self, timeout: float) -> None:
        wait_table_server_ready(
            self.network, self.prefix, timeout=timeout, check_alive=self._alive_or_raise
        )
