"""The rig's EPICS servers as local processes: the softioc IOC and the NTTable server.

start() returns only once the PVs answer (the IOC over both CA and PVA), polling with a
deadline; on timeout or an early exit it raises with the tail of the process log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from helpers import epics_helpers
from helpers.polling import WaitTimeout, wait_until
from helpers.rig.api import EpicsNetwork
from helpers.rig.paths import IOC_DIR, REPO_ROOT
from helpers.rig.processes import ManagedProcess

START_TIMEOUT = 30.0
# A record of ioc/test.db and a table of ioc/table_server.py that show the server is up.
IOC_PROBE = "DOUBLE"
TABLE_PROBE = "TABLE"


class _EpicsServerProcess:
    """Shared lifecycle of a local EPICS server process; subclasses say how it answers."""

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

    def _pva_answers(self, name: str) -> bool:
        self._alive_or_raise()
        try:
            epics_helpers.pva_get(self.network, name, timeout=0.5)
        except epics_helpers.EpicsClientError:
            return False
        return True

    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError


class LocalIoc(_EpicsServerProcess):
    """pythonSoftIOC serving ioc/test.db under ``prefix`` over CA and PVA.

    Only one IOC per EpicsNetwork may run at a time: a second CA server on the same UDP
    port is not reachable by the unicast searches the rig's clients send (checked: its PVs
    never connect over CA, while PVA still finds both). Starting a second one raises.
    """

    kind = "ioc"
    _running: dict[EpicsNetwork, LocalIoc] = {}

    def __init__(self, prefix: str, network: EpicsNetwork, db: Path = IOC_DIR / "test.db"):
        argv = [sys.executable, str(IOC_DIR / "run_ioc.py"), "--prefix", prefix, "--db", str(db)]
        super().__init__(prefix, network, argv)

    def start(self) -> None:
        other = self._running.get(self.network)
        if other is not None and other is not self and other.is_running():
            raise RuntimeError(
                f"cannot start {self.name}: {other.name} already runs on this EpicsNetwork, "
                "and CA reaches only one IOC per network; stop it or use another network"
            )
        self._running[self.network] = self
        super().start()

    def stop(self) -> None:
        super().stop()
        if self._running.get(self.network) is self:
            del self._running[self.network]

    def _wait_ready(self, timeout: float) -> None:
        probe = self.pv(IOC_PROBE)
        wait_until(
            lambda: self._pva_answers(probe),
            timeout=timeout,
            what=f"{probe} to answer over PVA",
        )
        self._wait_ca(probe, timeout)

    def _wait_ca(self, probe: str, timeout: float) -> None:
        if epics_helpers.ca_talks_to(self.network):

            def ca_answers() -> bool:
                self._alive_or_raise()
                try:
                    epics_helpers.ca_get(probe, timeout=0.5)
                except epics_helpers.EpicsClientError:
                    return False
                return True

            wait_until(ca_answers, timeout=timeout, what=f"{probe} to answer over CA")
        else:
            # This process's libca is not on this network: ask from a fresh process.
            try:
                epics_helpers.caget_in_subprocess(self.network, probe, timeout=timeout)
            except epics_helpers.EpicsClientError as err:
                raise WaitTimeout(f"{probe} did not answer over CA: {err}") from err


class LocalTableServer(_EpicsServerProcess):
    """The p4p NTTable server (ioc/table_server.py) under ``prefix``, PVA only."""

    kind = "tables"

    def __init__(self, prefix: str, network: EpicsNetwork):
        argv = [sys.executable, str(IOC_DIR / "table_server.py"), "--prefix", prefix]
        super().__init__(prefix, network, argv)

    def _wait_ready(self, timeout: float) -> None:
        probe = self.pv(TABLE_PROBE)
        wait_until(
            lambda: self._pva_answers(probe),
            timeout=timeout,
            what=f"{probe} to answer over PVA",
        )
