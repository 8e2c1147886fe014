"""The local backend: every part is a process on this machine, no Docker needed."""

from __future__ import annotations

from helpers.rig.api import ForwarderSpec
from helpers.rig.local_forwarder import LocalForwarder
from helpers.rig.local_ioc import LocalIoc, LocalTableServer
from helpers.rig.local_kafka import LocalKafka
from helpers.rig.rig_base import RigBase


class LocalRig(RigBase):
    name = "local"

    def _new_broker(self) -> LocalKafka:
        return LocalKafka()

    def ioc(self, prefix: str) -> LocalIoc:
        return self._own(LocalIoc(prefix, self.epics_network()))

    def table_server(self, prefix: str) -> LocalTableServer:
        return self._own(LocalTableServer(prefix, self.epics_network()))

    def forwarder(self, spec: ForwarderSpec) -> LocalForwarder:
        if self._build is None:
            raise RuntimeError("no forwarder build was given to the local rig")
        return self._local_forwarder(spec)
