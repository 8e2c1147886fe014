"""The docker backend: the broker, the IOCs and the forwarder as containers (Compose v2).

Same protocols as the local backend (helpers.rig.api), same configuration: the broker runs
local_kafka's server.properties, the IOC the same scripts, the forwarder the same arguments.
Host networking everywhere, so addresses and EPICS ports are those of the local backend and
a test cannot tell the two apart. Each part is its own Compose project (docker_compose.py).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from pathlib import Path

from helpers import kafka_helpers
from helpers.polling import wait_until
from helpers.rig.api import SASL_USERS, EpicsNetwork, ForwarderSpec
from helpers.rig.docker_compose import COMPOSE_DIR, ComposeProject, escape
from helpers.rig.docker_images import IOC_IMAGE, KAFKA_IMAGE, ensure_images, forwarder_image
from helpers.rig.forwarder_args import forwarder_args
from helpers.rig.forwarder_build import ForwarderBuild
from helpers.rig.local_ioc import START_TIMEOUT, LocalIoc, LocalTableServer
from helpers.rig.local_kafka import (
    JVM_OPTS,
    START_TIMEOUT_S,
    TOOL_JVM_OPTS,
    KafkaPorts,
    format_args,
    free_ports,
    new_cluster_id,
    server_properties,
)
from helpers.rig.paths import CONFIG_FILES, LOG_DIR, run_id
from helpers.rig.processes import make_temp_dir, remove_temp_dir, tail
from helpers.rig.rig_base import RigBase

_numbers = itertools.count(1)
KAFKA_CONF_IN_CONTAINER = "/etc/kafka-rig"


def _log(name: str) -> Path:
    return LOG_DIR / run_id() / f"{name}.log"


class DockerKafka:
    """The broker container (compose/kafka.yml); a stopped one keeps its data volume."""

    restartable = True

    def __init__(self, name: str | None = None, host: str = "127.0.0.1"):
        # Not plain "kafka": a local broker started beside it must not share its log file.
        self.name = name = name or f"kafka-docker-{next(_numbers)}"
        self.host = host
        self.ports = KafkaPorts(*free_ports(3, host))
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
            log_paths={"kafka": _log(name)},
        )
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

    def start(self) -> None:
        """Start the container; return once both listeners answer a metadata request."""
        began = time.monotonic()
        try:
            self._project.up("kafka", wait=True, timeout=START_TIMEOUT_S)
            self._wait_ready(START_TIMEOUT_S - (time.monotonic() - began))
        except Exception as exc:
            self._project.save_logs()
            raise RuntimeError(
                f"{self.name} did not start: {exc}\nlog {self.log_path}:\n{self.log_tail()}"
            ) from exc
        self.last_start_seconds = time.monotonic() - began

    def _wait_ready(self, timeout: float) -> None:
        user, password = SASL_USERS["PLAIN"]
        sasl = kafka_helpers.sasl_config("PLAIN", user, password)
        pending = {"PLAINTEXT": (self.bootstrap, {}), "SASL_PLAINTEXT": (self.sasl_bootstrap, sasl)}

        def ready() -> bool:
            state = self._project.state("kafka")
            if not state.get("Running"):
                raise RuntimeError(f"the container exited (code {state.get('ExitCode')})")
            for listener, (address, config) in list(pending.items()):
                if kafka_helpers.broker_answers(address, **config):
                    del pending[listener]
            return not pending

        wait_until(ready, timeout=max(timeout, 1.0), interval=0.25,
                   what=f"{self.name} to answer metadata requests",
                   seen=lambda: f"no answer yet on {sorted(pending)}")

    def stop(self) -> None:
        self._project.stop("kafka", timeout_s=30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Save the log, remove the container and its data volume, and the config dir."""
        try:
            self._project.down()
        finally:
            remove_temp_dir(self._conf)

    def is_running(self) -> bool:
        return bool(self._project.state("kafka").get("Running"))

    def log_tail(self, lines: int = 40) -> str:
        return self._project.logs("kafka", lines) or tail(self.log_path, lines)


class _ComposeServer:
    """Life cycle of an EPICS server container; the readiness probes (a PV answering over
    PVA, and CA for the IOC) are the local backend's, inherited from its classes."""

    kind = "epics-server"
    service = ""

    def __init__(self, prefix: str, network: EpicsNetwork):  # noqa: D107 - no super() on purpose
        self.prefix = prefix
        self.network = network
        self.name = f"{self.kind}-{prefix.rstrip(':')}-{network.ca_server_port}"
        self._project = ComposeProject(
            f"{self.kind}-{next(_numbers)}",
            [COMPOSE_DIR / "ioc.yml"],
            env={"IOC_IMAGE": IOC_IMAGE, "IOC_PREFIX": escape(prefix), **network.server_env()},
            log_paths={self.service: _log(self.name)},
        )

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

    def close(self) -> None:
        self._project.down()


class DockerIoc(_ComposeServer, LocalIoc):
    """ioc/run_ioc.py with ioc/test.db in the IOC image (service ``ioc`` of compose/ioc.yml)."""

    kind = "ioc"
    service = "ioc"


class DockerTableServer(_ComposeServer, LocalTableServer):
    """ioc/table_server.py in the IOC image (service ``tables`` of compose/ioc.yml)."""

    kind = "tables"
    service = "tables"


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
        self._log_path = _log(self.name)
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
        """Exit code once the forwarder exits by itself (128+N when signal N ended it)."""
        state: dict = {}

        def exited() -> bool:
            nonlocal state
            state = self._project.state("forwarder")
            return bool(state) and not state.get("Running")

        wait_until(exited, timeout=timeout, interval=0.2, what=f"{self.name} to exit")
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


class DockerRig(RigBase):
    """The docker backend (helpers.rig.api.Rig). ``forwarder_build`` set: that build runs as
    a local process against the containers (host networking makes them look the same)."""

    name = "docker"

    def __init__(
        self, *, forwarder_build: Path | ForwarderBuild | None, kafka_bootstrap: str | None = None
    ):
        super().__init__(forwarder_build=forwarder_build, kafka_bootstrap=kafka_bootstrap)
        self._forwarder_image: str | None = None

    def _new_broker(self) -> DockerKafka:
        ensure_images("kafka")
        return DockerKafka()

    def ioc(self, prefix: str) -> DockerIoc:
        ensure_images("ioc")
        return self._own(DockerIoc(prefix, self.epics_network()))

    def table_server(self, prefix: str) -> DockerTableServer:
        ensure_images("ioc")
        return self._own(DockerTableServer(prefix, self.epics_network()))

    def forwarder(self, spec: ForwarderSpec):
        if self._build is not None:
            return self._local_forwarder(spec)
        if self._forwarder_image is None:
            self._forwarder_image = forwarder_image()
            ensure_images("forwarder", forwarder_image=self._forwarder_image)
        kafka = self.kafka()
        return self._own(
            DockerForwarder(
                spec,
                image=self._forwarder_image,
                bootstrap=kafka.forwarder_bootstrap,
                sasl_bootstrap=kafka.forwarder_sasl_bootstrap,
                network=self.epics_network(),
            )
        )
