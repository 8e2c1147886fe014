"""What both backends share: one EPICS network and one broker per rig, and an orderly close
of every part the rig made. Knows no backend: each one makes its own parts."""

from __future__ import annotations

from pathlib import Path

from helpers.rig.api import EpicsNetwork, KafkaBroker
from helpers.rig.external_kafka import ExternalKafka
from helpers.rig.forwarder_build import ForwarderBuild
from helpers.rig.ports import allocate_epics_network


class RigBase:
    """A backend makes its own broker (``_make_broker``) and parts; the rest is here."""

    name = "?"

    def __init__(
        self, *, forwarder_build: Path | ForwarderBuild | None, kafka_bootstrap: str | None = None
    ):
        self._build = forwarder_build
        self._kafka_bootstrap = kafka_bootstrap
        self._kafka = None
        self._network: EpicsNetwork | None = None
        self._owned: list = []

    def _make_broker(self) -> KafkaBroker:
        """A broker of this backend, not started yet."""
        raise NotImplementedError

    def epics_network(self) -> EpicsNetwork:
        if self._network is None:
            self._network = allocate_epics_network()
        return self._network

    def kafka(self) -> KafkaBroker:
        if self._kafka is None:
            if self._kafka_bootstrap:
                self._kafka = ExternalKafka(self._kafka_bootstrap)
            else:
                broker = self._make_broker()
                self._kafka = broker
                broker.start()
        return self._kafka

    def new_kafka(self) -> KafkaBroker:
        return self._own(self._make_broker())

    def _own(self, part):
        self._owned.append(part)
        return part

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
                self._kafka.close()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"kafka: {exc}")
            self._kafka = None
        if errors:
            raise RuntimeError(f"closing the {self.name} rig: " + "; ".join(errors))
