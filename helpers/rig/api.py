"""What a test may rely on, whichever backend (local processes or docker) runs the parts.

Tests only ever see these protocols through the ``rig``, ``kafka``, ``ioc``, ``table_server``
and ``forwarder`` fixtures; the backends in ``helpers.rig.local`` and ``helpers.rig.docker``
implement them. What a part can or cannot do (be restarted, offer SASL) is part of its
protocol, so a test asks the part instead of guessing from attributes or exception names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from helpers.polling import WaitTimeout

# SASL users the broker always has: mechanism -> (user, password).
SASL_USERS: Mapping[str, tuple[str, str]] = {
    "PLAIN": ("fwd-plain", "plain-secret"),
    "SCRAM-SHA-256": ("fwd-scram256", "scram256-secret"),
    "SCRAM-SHA-512": ("fwd-scram512", "scram512-secret"),
}


class RigTimeout(WaitTimeout):
    """A part of the rig did not do in time what it was asked to (e.g. a forwarder did not
    exit), whichever backend runs it: tests catch this one exception."""


class BrokerNotSupported(RuntimeError):
    """The operation (start, stop, restart) is not possible on this broker (see
    ``KafkaBroker.restartable``)."""


@dataclass(frozen=True)
class EpicsNetwork:
    """Ports and client environment one rig's EPICS servers and clients share.

    Two rigs on one machine pick different ports, so they never see each other's PVs.
    """

    ca_server_port: int
    ca_repeater_port: int
    pva_server_port: int
    pva_broadcast_port: int
    host: str = "127.0.0.1"

    def client_env(self) -> dict[str, str]:
        """Environment for any CA/PVA client (forwarder, helpers) that must reach this rig."""
        return {
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_ADDR_LIST": f"{self.host}:{self.ca_server_port}",
            "EPICS_CA_SERVER_PORT": str(self.ca_server_port),
            "EPICS_CA_REPEATER_PORT": str(self.ca_repeater_port),
            "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVA_ADDR_LIST": f"{self.host}:{self.pva_broadcast_port}",
            "EPICS_PVA_SERVER_PORT": str(self.pva_server_port),
            "EPICS_PVA_BROADCAST_PORT": str(self.pva_broadcast_port),
        }

    def server_env(self) -> dict[str, str]:
        """Environment for an IOC or p4p server of this rig."""
        env = self.client_env()
        env.update(
            {
                "EPICS_CAS_INTF_ADDR_LIST": self.host,
                "EPICS_CAS_SERVER_PORT": str(self.ca_server_port),
                "EPICS_CAS_BEACON_ADDR_LIST": self.host,
                "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
                "EPICS_PVAS_INTF_ADDR_LIST": self.host,
                "EPICS_PVAS_SERVER_PORT": str(self.pva_server_port),
                "EPICS_PVAS_BROADCAST_PORT": str(self.pva_broadcast_port),
                "EPICS_PVAS_BEACON_ADDR_LIST": self.host,
                "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
            }
        )
        return env


class Service(Protocol):
    """A part of the rig that can be stopped and started again in the middle of a test."""

    name: str

    def start(self) -> None:
        """Start and return once the service answers (not after a sleep)."""

    def stop(self) -> None:
        """Orderly stop; returns once it is gone."""

    def restart(self) -> None: ...

    def is_running(self) -> bool: ...

    def log_tail(self, lines: int = 40) -> str: ...

    @property
    def log_path(self) -> Path: ...


class KafkaBroker(Service, Protocol):
    """A single-node KRaft broker with a PLAINTEXT and a SASL_PLAINTEXT listener."""

    # False for a broker the rig does not run (--kafka-bootstrap): start, stop and restart
    # raise BrokerNotSupported.
    restartable: bool
    # False where the rig cannot freeze the broker; pause and resume then raise
    # BrokerNotSupported.
    pausable: bool

    def pause(self) -> None:
        """Freeze the broker: connections stay open but nothing is answered, so clients
        queue instead of failing over; ``resume`` carries on where it stopped."""

    def resume(self) -> None: ...

    @property
    def bootstrap(self) -> str:
        """host:port of the PLAINTEXT listener, as seen from the test process."""

    @property
    def sasl_bootstrap(self) -> str | None:
        """host:port of the SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512),
        or None when the rig knows of none (--kafka-bootstrap)."""

    @property
    def forwarder_bootstrap(self) -> str:
        """host:port of the PLAINTEXT listener as seen from the forwarder (same as bootstrap
        unless the forwarder runs in a container)."""

    @property
    def forwarder_sasl_bootstrap(self) -> str | None: ...

    @property
    def has_storage(self) -> bool:
        """Whether the broker's data (its topics) still exists; a stop keeps it, close not."""

    def close(self) -> None:
        """Final stop: the broker is stopped and its data removed (nothing, for a broker the
        rig does not run)."""


class Ioc(Service, Protocol):
    """The rig's IOC (pythonSoftIOC), serving the records of ioc/test.db under ``prefix``."""

    prefix: str
    network: EpicsNetwork

    def pv(self, suffix: str) -> str:
        """Full PV name of a record, e.g. pv("DOUBLE") -> "T12:DOUBLE"."""

    @property
    def pid(self) -> int | None:
        """The server's pid on this machine (containers share the host's pid namespace)."""

    @property
    def returncode(self) -> int | None:
        """Exit code of the last run (None while running or never started)."""


class TableServer(Service, Protocol):
    """A p4p server serving NTTable PVs under ``prefix``."""

    prefix: str
    network: EpicsNetwork

    def pv(self, suffix: str) -> str: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def returncode(self) -> int | None: ...


@dataclass
class ForwarderSpec:
    """How to start one forwarder: an ini file from config-files/ plus command-line args."""

    ini_file: str | None  # name inside config-files/, e.g. "forwarder.ini"
    config_topic: str
    status_topic: str
    storage_topic: str | None = None
    extra_args: Sequence[str] = field(default_factory=tuple)
    sasl: str | None = None  # a mechanism from SASL_USERS to use the SASL listener
    password: str | None = None  # overrides the user's password (to test a wrong one)
    # host:port (as the forwarder sees it) of the broker its data goes to, when that is not
    # the broker of its commands and status, e.g. a second one from ``Rig.new_kafka``.
    output_broker: str | None = None


class Forwarder(Service, Protocol):
    spec: ForwarderSpec
    # The service id the rig started it with; its x5f2 status messages carry it.
    service_id: str

    @property
    def pid(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit by itself; return its exit code (128+N when signal N
        ended it in a container). Raises RigTimeout when it still runs after ``timeout``."""


class Rig(Protocol):
    """One backend: makes the parts; the fixtures start, stop and hand them to tests."""

    name: str

    def epics_network(self) -> EpicsNetwork:
        """The ports and env of this rig's EPICS servers (chosen once per rig)."""

    def kafka(self) -> KafkaBroker:
        """The session's broker, started."""

    def new_kafka(self) -> KafkaBroker:
        """Another broker of this backend on ports of its own, not started yet (for tests of
        brokers side by side); the rig closes it at the latest when it closes."""

    def ioc(self, prefix: str, network: EpicsNetwork | None = None) -> Ioc:
        """A new IOC with ``prefix`` on ``network`` (default: the rig's), not started yet."""

    def table_server(self, prefix: str, network: EpicsNetwork | None = None) -> TableServer:
        """A new NTTable server with ``prefix`` on ``network`` (default: the rig's), not
        started yet."""

    def forwarder(self, spec: ForwarderSpec) -> Forwarder:
        """A new forwarder for ``spec``, not started yet."""

    def close(self) -> None:
        """Stop and remove everything this rig started."""
