"""The EPICS network of each source test module: the rig's ``EpicsNetwork`` on free ports.

Its server environment (CA and PVA, clients and servers alike) is set in ``os.environ`` for
the module, with pytest's ``MonkeyPatch``, so that the in-process p4p servers and clients,
libca and the IOC subprocesses all keep to these ports.
"""

from __future__ import annotations

import pytest

from helpers.rig.api import EpicsNetwork
from helpers.rig.ports import allocate_epics_network


@pytest.fixture(scope="module")
def epics_network():
    network: EpicsNetwork = allocate_epics_network()
    with pytest.MonkeyPatch.context() as env:
        for name, value in network.server_env().items():
            env.setenv(name, value)
        yield network
