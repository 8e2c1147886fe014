"""The local backend: every part is a process on this machine, no Docker needed."""

from __future__ import annotations

from helpers.rig.api import EpicsNetwork, ForwarderSpec
from helpers.rig.local.epics_servers import LocalIoc, LocalTableServer
from helpers.rig.local.forwarder import LocalForwarder, host_forwarder
from helpers.rig.local.kafka import LocalKafka
from helpers.rig.rig_base import RigBase


class LocalRig(RigBase):
    name = "local"

    def _make_broker(self) -> LocalKafka:
        return LocalKafka()

    def ioc(self, prefix: str, network: EpicsNetwork | None = None) -> LocalIoc:
        return self._own(LocalIoc(prefix, network or self.epics_network()))

    def table_server(self, prefix: str, network: EpicsNetwork | None = None) -> LocalTableServer:
        return self._own(LocalTableServer(prefix, network or self.epics_network()))

    def forwarder(self, spec: ForwarderSpec) -> LocalForwarder:
        if self._build is None:
            raise RuntimeError("no forwarder build was given to the local rig")
        return self._own(
            host_forwarder(
                spec, build=self._build, kafka=self.kafka(), network=self.epics_network()
            )
        )

