"""The forwarder under test, run as a process on this machine from a build directory (the
local backend's forwarder, and the docker backend's with ``--local-build``)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from pathlib import Path

from helpers.rig.api import EpicsNetwork, ForwarderSpec, KafkaBroker, RigTimeout
from helpers.rig.forwarder_args import forwarder_args
from helpers.rig.forwarder_build import ForwarderBuild, launch_command
from helpers.rig.paths import CONFIG_FILES, LOG_DIR, run_id
from helpers.rig.processes import ManagedProcess, tail

_numbers = itertools.count(1)


class LocalForwarder:
    """A forwarder process; its own log (``--log-file``) goes to logs/<run>/."""

    def __init__(
        self,
        spec: ForwarderSpec,
        *,
        build: Path | ForwarderBuild,
        bootstrap: str,
        sasl_bootstrap: str | None,
        network: EpicsNetwork,
        label: str = "forwarder",
    ):
        self.spec = spec
        self.name = f"{label}-{next(_numbers)}"
        self._log_path = LOG_DIR / run_id() / f"{self.name}.log"
        self.service_id = f"{self.name}-{run_id()}"
        argv = launch_command(build) + forwarder_args(
            spec,
            plain_bootstrap=bootstrap,
            sasl_bootstrap=sasl_bootstrap,
            config_dir=str(CONFIG_FILES),
            log_file=str(self._log_path),
            service_id=self.service_id,
        )
        env = dict(os.environ)
        env.update(network.client_env())
        # Stdout/stderr (start-up errors, tracebacks) beside the forwarder's own log.
        self._process = ManagedProcess(
            self.name,
            argv,
            env=env,
            log_path=LOG_DIR / run_id() / f"{self.name}.stdout.log",
            # SIGTERM first: that is how a service manager stops a forwarder.
            stop_signals=((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)),
        )

    @property
    def argv(self) -> list[str]:
        return self._process.argv

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def log_path(self) -> Path:
        return self._log_path

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        self._process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self._process.is_running()

    def send_signal(self, sig: int) -> None:
        if self._process.popen is not None:
            self._process.popen.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """The exit code once the process exits by itself; RigTimeout if it still runs."""
        try:
            code = self._process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RigTimeout(f"{self.name} still runs after {timeout:.1f}s") from None
        self._process.stop()  # reap the group and drop the registry record
        return code

    def log_tail(self, lines: int = 40) -> str:
        own = tail(self._log_path, lines)
        stdout = self._process.tail(lines)
        return f"{own}\n--- stdout/stderr ---\n{stdout}" if stdout.strip() else own


def host_forwarder(
    spec: ForwarderSpec, *, build: Path, kafka: KafkaBroker, network: EpicsNetwork
) -> LocalForwarder:
    """A forwarder of ``build`` on this machine, against ``kafka`` as the forwarder sees it."""
    return LocalForwarder(
        spec,
        build=build,
        bootstrap=kafka.forwarder_bootstrap,
        sasl_bootstrap=kafka.forwarder_sasl_bootstrap,
        network=network,
    )
