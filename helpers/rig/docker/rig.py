"""The docker backend: the broker, the IOCs and the forwarder as containers (Compose v2).

Same protocols as the local backend (helpers.rig.api), same configuration: the broker runs
``broker_config``'s server.properties, the IOC the same scripts, the forwarder the same
arguments, and readiness is the same probes (``readiness``). Host networking everywhere, so
addresses and EPICS ports are those of the local backend and a test cannot tell the two
apart. Each part is its own Compose project (``compose``).
"""

from __future__ import annotations

from pathlib import Path

from helpers.rig.api import EpicsNetwork, ForwarderSpec
from helpers.rig.docker.epics_servers import DockerIoc, DockerTableServer
from helpers.rig.docker.forwarder import DockerForwarder
from helpers.rig.docker.images import ensure_images, forwarder_image
from helpers.rig.docker.kafka import DockerKafka
from helpers.rig.forwarder_build import ForwarderBuild
from helpers.rig.local.forwarder import host_forwarder
from helpers.rig.rig_base import RigBase


class DockerRig(RigBase):
    """The docker backend (helpers.rig.api.Rig). ``forwarder_build`` set: that build runs as
    a local process against the containers (host networking makes them look the same)."""

    name = "docker"

    def __init__(
        self, *, forwarder_build: Path | ForwarderBuild | None, kafka_bootstrap: str | None = None
    ):
        super().__init__(forwarder_build=forwarder_build, kafka_bootstrap=kafka_bootstrap)
        self._forwarder_image: str | None = None

    def _make_broker(self) -> DockerKafka:
        ensure_images("kafka")
        return DockerKafka()

    def ioc(self, prefix: str, network: EpicsNetwork | None = None) -> DockerIoc:
        ensure_images("ioc")
        return self._own(DockerIoc(prefix, network or self.epics_network()))

    def table_server(self, prefix: str, network: EpicsNetwork | None = None) -> DockerTableServer:
        ensure_images("ioc")
        return self._own(DockerTableServer(prefix, network or self.epics_network()))

    def forwarder_image(self) -> str:
        """The forwarder image under test (``images.forwarder_image``), built or confirmed
        cached once per session; for forwarders the rig does not start itself, such as the
        replicas of compose/forwarder-group.yml."""
        if self._forwarder_image is None:
            self._forwarder_image = forwarder_image()
            ensure_images("forwarder", forwarder_image=self._forwarder_image)
        return self._forwarder_image

    def forwarder(self, spec: ForwarderSpec):
        if self._build is not None:
            # A forwarder build of this machine, against the containers (host networking).
            return self._own(
                host_forwarder(
                    spec, build=self._build, kafka=self.kafka(), network=self.epics_network()
                )
            )
        kafka = self.kafka()
        return self._own(
            DockerForwarder(
                spec,
                image=self.forwarder_image(),
                bootstrap=kafka.forwarder_bootstrap,
                sasl_bootstrap=kafka.forwarder_sasl_bootstrap,
                network=self.epics_network(),
            )
        )
