"""What both backends share: one EPICS network and one broker per rig, and an orderly close
of every part the rig made."""

from __future__ import annotations

from pathlib import Path

from helpers.rig.api import EpicsNetwork, ForwarderSpec
from helpers.rig.forwarder_build import ForwarderBuild
from helpers.rig.local_forwarder import LocalForwarder
from helpers.rig.local_kafka import ExternalKafka
from helpers.rig.ports import allocate_epics_network


class RigBase:
    """A backend makes its own broker (``_new_broker``) and parts; the rest is here."""

    name = "?"

    def __init__(
        self, *, forwarder_build: Path | ForwarderBuild | None, kafka_bootstrap: str | None = None
    ):
        self._build = forwarder_build
        self._kafka_bootstrap = kafka_bootstrap
        self._kafka = None
        self._network: EpicsNetwork | None = None
        self._owned: list = []

    def _new_broker(self):
        """A broker of this backend, not started yet."""
        raise NotImplementedError

    def epics_network(self) -> EpicsNetwork:
        if self._network is None:
            self._network = allocate_epics_network()
        return self._network

    def kafka(self):
        if self._kafka is None:
            if self._kafka_bootstrap:
                self._kafka = ExternalKafka(self._kafka_bootstrap)
            else:
                broker = self._new_broker()
                self._kafka = broker
                broker.start()
        return self._kafka

    def _own(self, part):
        self._owned.append(part)
        return part

    def _local_forwarder(self, spec: ForwarderSpec) -> LocalForwarder:
        """A forwarder of ``forwarder_build`` running on this machine."""
        kafka = self.kafka()
        return self._own(
            LocalForwarder(
                spec,
                build=self._build,
                bootstrap=kafka.forwarder_bootstrap,
                sasl_bootstrap=kafka.forwarder_sasl_bootstrap,
                network=self.epics_network(),
            )
        )

    def close(self) -> None:
        """Close (or stop) every part, newest first, then the broker; one failure does not
        stop the others from being closed."""
        errors = []
        for part in reversed(self._owned):
            try:
                close = getattr(part, "close", None)
                if close is not None:
                    close()
                elif part.is_running():
                    part.stop()
            except Exception as exc:  # noqa: BLE001 - keep closing the others
                errors.append(f"{part.name}: {exc}")
        self._owned.clear()
        if self._kafka is not None:
            try:
                close = getattr(self._kafka, "close", None)
                if close is not None:
                    close()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"kafka: {exc}")
            self._kafka = None
        if errors:
            raise RuntimeError(f"closing the {self.name} rig: " + "; ".join(errors))
