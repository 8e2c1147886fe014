"""The local backend: every part is a process on this machine, no Docker needed."""

from __future__ import annotations

from pathlib import Path

from helpers.rig.api import EpicsNetwork, ForwarderSpec
from helpers.rig.local_forwarder import LocalForwarder
from helpers.rig.local_ioc import LocalIoc, LocalTableServer
from helpers.rig.local_kafka import ExternalKafka, LocalKafka
from helpers.rig.ports import allocate_epics_network


class LocalRig:
    name = "local"

    def __init__(self, *, forwarder_build: Path | None, kafka_bootstrap: str | None = None):
        self._build = forwarder_build
        self._kafka_bootstrap = kafka_bootstrap
        self._kafka = None
        self._network: EpicsNetwork | None = None
        self._owned: list = []

    def epics_network(self) -> EpicsNetwork:
        if self._network is None:
            self._network = allocate_epics_network()
        return self._network

    def kafka(self):
        if self._kafka is None:
            if self._kafka_bootstrap:
                self._kafka = ExternalKafka(self._kafka_bootstrap)
            else:
                self._kafka = LocalKafka()
                self._kafka.start()
        return self._kafka

    def ioc(self, prefix: str) -> LocalIoc:
        ioc = LocalIoc(prefix, self.epics_network())
        self._owned.append(ioc)
        return ioc

    def table_server(self, prefix: str) -> LocalTableServer:
        server = LocalTableServer(prefix, self.epics_network())
        self._owned.append(server)
        return server

    def forwarder(self, spec: ForwarderSpec) -> LocalForwarder:
        if self._build is None:
            raise RuntimeError("no forwarder build was given to the local rig")
        kafka = self.kafka()
        fwd = LocalForwarder(
            spec,
            build=self._build,
            bootstrap=kafka.forwarder_bootstrap,
            sasl_bootstrap=kafka.forwarder_sasl_bootstrap,
            network=self.epics_network(),
        )
        self._owned.append(fwd)
        return fwd

    def close(self) -> None:
        for part in reversed(self._owned):
            if part.is_running():
                part.stop()
        self._owned.clear()
        if self._kafka is not None:
            close = getattr(self._kafka, "close", None)
            if close:
                close()
            self._kafka = None
