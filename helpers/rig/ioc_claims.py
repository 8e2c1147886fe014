"""One running IOC per EpicsNetwork, whichever backend runs it.

A second CA server on the same UDP port is not reachable by the unicast searches the rig's
clients send (checked: its PVs never connect over CA, while PVA still finds both), so an IOC
claims its network before it starts and a second claim on a network is refused.
"""

from __future__ import annotations

from typing import Protocol

from helpers.rig.api import EpicsNetwork


class _RunningIoc(Protocol):
    name: str

    def is_running(self) -> bool: ...


_claims: dict[EpicsNetwork, _RunningIoc] = {}


def claim(network: EpicsNetwork, ioc: _RunningIoc) -> None:
    """Record ``ioc`` as the IOC of ``network``; raise if another one runs there."""
    other = _claims.get(network)
    if other is not None and other is not ioc and other.is_running():
        raise RuntimeError(
            f"cannot start {ioc.name}: {other.name} already runs on this EpicsNetwork, "
            "and CA reaches only one IOC per network; stop it or use another network"
        )
    _claims[network] = ioc


def release(network: EpicsNetwork, ioc: _RunningIoc) -> None:
    """Forget ``ioc`` as the IOC of ``network`` (after it stopped)."""
    if _claims.get(network) is ioc:
        del _claims[network]
