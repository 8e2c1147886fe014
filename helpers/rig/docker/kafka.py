"""The docker backend's Kafka broker: the broker image (compose/kafka.yml) run with the
configuration of ``broker_config``, the same broker as the local backend's JVM."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from helpers.polling import wait_until
from helpers.rig.broker_config import (
    JVM_OPTS,
    START_TIMEOUT_S,
    TOOL_JVM_OPTS,
    KafkaPorts,
    format_args,
    new_cluster_id,
    server_properties,
)
from helpers.rig.docker.compose import COMPOSE_DIR, ComposeError, ComposeProject
from helpers.rig.docker.images import KAFKA_IMAGE
from helpers.rig.paths import part_log_path
from helpers.rig.ports import free_tcp_ports
from helpers.rig.processes import make_temp_dir, remove_temp_dir, tail
from helpers.rig.readiness import wait_broker_ready

_numbers = itertools.count(1)
KAFKA_CONF_IN_CONTAINER = "/etc/kafka-rig"
# runc's cgroup freezer can fail to freeze a busy JVM ("unable to freeze"; it thaws it
# again): seen once in a CI run of the suite under load. The freeze is tried again until this.
PAUSE_TIMEOUT_S = 30.0


class DockerKafka:
    """The broker container; a stopped one keeps its data volume, ``close()`` removes it."""

    restartable = True
    pausable = True

    def __init__(self, name: str | None = None, host: str = "127.0.0.1"):
        # Not plain "kafka": a local broker started beside it must not share its log file.
        self.name = name = name or f"kafka-docker-{next(_numbers)}"
        self.host = host
        self._paused = False
        self.ports = KafkaPorts(*free_tcp_ports(3, host))
        self._conf = make_temp_dir(f"{name}-conf")
        (self._conf / "server.properties").write_text(
            server_properties(self.ports, "/var/lib/kafka", host)
        )
        properties = f"{KAFKA_CONF_IN_CONTAINER}/server.properties"
        (self._conf / "format-args").write_text(
            "\n".join(format_args(properties, new_cluster_id())) + "\n"
        )
        self._project = ComposeProject(
            name,
            [COMPOSE_DIR / "kafka.yml"],
            env={
                "KAFKA_IMAGE": KAFKA_IMAGE,
                "KAFKA_CONFIG_DIR": str(self._conf),
                "KAFKA_PLAIN_PORT": str(self.ports.plaintext),
                "KAFKA_SASL_PORT": str(self.ports.sasl),
                "KAFKA_JVM_OPTS": " ".join(JVM_OPTS),
                "KAFKA_TOOL_JVM_OPTS": " ".join(TOOL_JVM_OPTS),
            },
            log_paths={"kafka": part_log_path(name)},
        )
        # The data volume exists from the first start until close() (``down -v``).
        self._storage = False
        self.last_start_seconds: float | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.ports.plaintext}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"{self.host}:{self.ports.sasl}"

    # Host networking: the forwarder container sees the broker where the tests do.
    forwarder_bootstrap = bootstrap
    forwarder_sasl_bootstrap = sasl_bootstrap

    @property
    def log_path(self) -> Path:
        return self._project.log_paths["kafka"]

    @property
    def has_storage(self) -> bool:
        return self._storage

    def start(self) -> None:
        """Start the container; return once both listeners answer a metadata request."""
        began = time.monotonic()
        self._storage = True
        try:
            self._project.up("kafka", wait=True, timeout=START_TIMEOUT_S)
            wait_broker_ready(
                self.name,
                self.bootstrap,
                self.sasl_bootstrap,
                timeout=START_TIMEOUT_S - (time.monotonic() - began),
                check_alive=self._check_alive,
            )
        except Exception as exc:
            self._project.save_logs()
            if isinstance(exc, ComposeError) and not self.is_running():
                exc = self._exited_error(exc)  # `up --wait` saw the container exit
            raise RuntimeError(
                f"{self.name} did not start: {exc}\nlog {self.log_path}:\n{self.log_tail()}"
            ) from exc
        self.last_start_seconds = time.monotonic() - began

    def _exited_error(self, cause: Exception) -> RuntimeError:
        code = self._project.state("kafka").get("ExitCode")
        return RuntimeError(f"{self.name} exited (code {code}) before it was ready ({cause})")

    def _check_alive(self) -> None:
        state = self._project.state("kafka")
        if not state.get("Running"):
            raise RuntimeError(
                f"{self.name} exited (code {state.get('ExitCode')}) before it was ready"
            )

    def stop(self) -> None:
        self.resume()  # a paused container cannot stop in order
        self._project.stop("kafka", timeout_s=30)

    def pause(self) -> None:
        """``docker compose pause`` (the cgroup freezer; see KafkaBroker.pause)."""
        if not self.is_running():
            raise RuntimeError(f"{self.name} is not running")
        failures: list[str] = []

        def frozen() -> bool:
            try:
                self._project.run("pause", "kafka")
            except ComposeError as e:
                if "unable to freeze" not in str(e):
                    raise
                failures.append(str(e).strip().splitlines()[-1])
                return False
            return True

        wait_until(
            frozen,
            timeout=PAUSE_TIMEOUT_S,
            what=f"the engine to freeze {self.name}",
            seen=lambda: f"{len(failures)} failed freezes, the last: {failures[-1:]}",
            interval=0.5,
        )
        self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._project.run("unpause", "kafka")
            self._paused = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Save the log, remove the container and its data volume, and the config dir."""
        try:
            self._project.down()
        finally:
            self._storage = False
            remove_temp_dir(self._conf)

    def is_running(self) -> bool:
        return bool(self._project.state("kafka").get("Running"))

    def log_tail(self, lines: int = 40) -> str:
        return self._project.logs("kafka", lines) or tail(self.log_path, lines)
