"""The local backend's Kafka broker: a JVM (KRaft, broker+controller in one) on this machine.

No Docker: the broker runs from its Maven jars (see ``kafka_jars``) with the configuration of
``broker_config``. Each instance gets free ports on 127.0.0.1 and a fresh data dir, so several
can run side by side. ``stop()`` and ``start()`` keep both, so a restarted broker still holds
its topics; ``close()`` removes the data dir for good.
"""

from __future__ import annotations

import itertools
import logging
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from helpers.polling import WaitTimeout
from helpers.rig import kafka_jars
from helpers.rig.broker_config import (
    JVM_OPTS,
    START_TIMEOUT_S,
    TOOL_JVM_OPTS,
    KafkaPorts,
    format_args,
    new_cluster_id,
    server_properties,
)
from helpers.rig.paths import LOG_DIR, run_id
from helpers.rig.ports import free_tcp_ports
from helpers.rig.processes import ManagedProcess, make_temp_dir, remove_temp_dir, tail
from helpers.rig.readiness import wait_broker_ready

FORMAT_TIMEOUT_S = 120.0
# Kafka shuts down cleanly on SIGTERM; give it time to flush before the kill.
KAFKA_STOP_SIGNALS = ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0))

_instance_numbers = itertools.count(1)
log = logging.getLogger(__name__)


def java_command(
    main_class: str,
    args: Sequence[str],
    *,
    jvm_opts: Sequence[str] = JVM_OPTS,
    jar_classpath: str | None = None,
) -> list[str]:
    """argv that runs ``main_class`` from the broker's jars with the rig's log4j2 config."""
    java = kafka_jars.require_tool("java")
    cp = jar_classpath if jar_classpath is not None else kafka_jars.classpath()
    return [
        java,
        *jvm_opts,
        f"-Dlog4j2.configurationFile={kafka_jars.LOG4J_CONFIG}",
        "-cp",
        cp,
        main_class,
        *args,
    ]


class LocalKafka:
    """A Kafka broker JVM started and owned by the test process (implements KafkaBroker)."""

    restartable = True
    pausable = True

    def __init__(self, name: str | None = None, bind_host: str = "127.0.0.1"):
        number = next(_instance_numbers)
        self.name = name or ("kafka" if number == 1 else f"kafka-{number}")
        self.host = bind_host
        self.ports = KafkaPorts(*free_tcp_ports(3, bind_host))
        self._data_dir: Path | None = None
        self._process: ManagedProcess | None = None
        self._log_path = LOG_DIR / run_id() / f"{self.name}.log"
        self.last_start_seconds: float | None = None

    # -- addresses ------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.ports.plaintext}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"{self.host}:{self.ports.sasl}"

    @property
    def forwarder_bootstrap(self) -> str:
        return self.bootstrap

    @property
    def forwarder_sasl_bootstrap(self) -> str:
        return self.sasl_bootstrap

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir

    @property
    def has_storage(self) -> bool:
        return self._data_dir is not None

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the JVM (formatting storage the first time); return when both client
        listeners answer a metadata request."""
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running (pid {self._process.pid})")
        if self._process is not None:
            self._process.stop()  # a JVM that died by itself: reap it and drop its record
        began = time.monotonic()
        cp = kafka_jars.classpath()
        properties = self._prepare_storage(cp)
        self._process = ManagedProcess(
            self.name,
            java_command("kafka.Kafka", [str(properties)], jar_classpath=cp),
            log_path=self._log_path,
            stop_signals=KAFKA_STOP_SIGNALS,
        ).start()
        try:
            self.wait_ready(START_TIMEOUT_S - (time.monotonic() - began))
        except BaseException:
            self._process.stop()
            raise
        self.last_start_seconds = time.monotonic() - began
        log.info("%s ready on %s and %s in %.1f s", self.name, self.bootstrap, self.sasl_bootstrap,
                 self.last_start_seconds)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Poll until both listeners answer a metadata request, the JVM exits, or time is up."""
        try:
            wait_broker_ready(
                self.name,
                self.bootstrap,
                self.sasl_bootstrap,
                timeout=timeout,
                check_alive=self._check_alive,
            )
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}\nlog {self._log_path}:\n{self.log_tail()}") from None

    def _check_alive(self) -> None:
        if self._process is None or not self._process.is_running():
            code = None if self._process is None else self._process.returncode
            raise RuntimeError(
                f"{self.name} exited (code {code}) before it was ready; "
                f"log {self._log_path}:\n{self.log_tail()}"
            )

    def _prepare_storage(self, cp: str) -> Path:
        """Write server.properties and format a fresh data dir, once per instance."""
        if self._data_dir is not None:
            return self._data_dir / "server.properties"
        data_dir = make_temp_dir(self.name)
        properties = data_dir / "server.properties"
        properties.write_text(server_properties(self.ports, data_dir, self.host))
        argv = java_command(
            "kafka.tools.StorageTool",
            format_args(properties, new_cluster_id()),
            jvm_opts=TOOL_JVM_OPTS,
            jar_classpath=cp,
        )
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} format storage in {data_dir}\n".encode())
            log.write(properties.read_bytes())
            log.flush()
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=FORMAT_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired:
                remove_temp_dir(data_dir)
                raise RuntimeError(
                    f"formatting Kafka storage took over {FORMAT_TIMEOUT_S}s; log {self._log_path}"
                ) from None
        if done.returncode != 0:
            remove_temp_dir(data_dir)
            raise RuntimeError(
                f"formatting Kafka storage failed (exit {done.returncode}); "
                f"log {self._log_path}:\n{self.log_tail()}"
            )
        self._data_dir = data_dir
        return properties

    def stop(self) -> None:
        """Orderly stop (SIGTERM, then SIGKILL after 30 s); data and ports are kept."""
        if self._process is not None:
            self._process.signal(signal.SIGCONT)  # a paused JVM cannot handle SIGTERM
            self._process.stop()

    def pause(self) -> None:
        """SIGSTOP the JVM (see KafkaBroker.pause)."""
        if not self.is_running():
            raise RuntimeError(f"{self.name} is not running")
        self._process.signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Final stop: the JVM is stopped and the data dir removed."""
        self.stop()
        if self._data_dir is not None:
            remove_temp_dir(self._data_dir)
            self._data_dir = None

    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running()

    def log_tail(self, lines: int = 40) -> str:
        return tail(self._log_path, lines)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
