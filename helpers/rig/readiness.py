"""When is a part of the rig ready: the same probes for every backend.

A part is ready when a client gets an answer from it, never after a sleep: the broker answers
a metadata request on both client listeners, the IOC a get over PVA and CA, the table server a
get over PVA. Each wait polls until a deadline and calls the part's ``check_alive`` between
polls, which raises when the process or container has exited, so a dead part fails at once.
"""

from __future__ import annotations

from collections.abc import Callable

from helpers import epics_helpers, kafka_helpers
from helpers.polling import WaitTimeout, wait_until
from helpers.rig.api import SASL_USERS, EpicsNetwork

# A record of ioc/test.db and a table of ioc/table_server.py that show the server is up.
IOC_PROBE = "DOUBLE"
TABLE_PROBE = "TABLE"

CheckAlive = Callable[[], None]


def _always_alive() -> None:
    """For a part the rig does not run: nothing to check."""


def wait_broker_ready(
    name: str,
    bootstrap: str,
    sasl_bootstrap: str | None,
    *,
    timeout: float,
    check_alive: CheckAlive = _always_alive,
    interval: float = 0.25,
    what: str | None = None,
) -> None:
    """Poll until the PLAINTEXT listener (and the SASL_PLAINTEXT one, logging in as the PLAIN
    user, when there is one) answers a metadata request."""
    user, password = SASL_USERS["PLAIN"]
    pending = {"PLAINTEXT": (bootstrap, {})}
    if sasl_bootstrap is not None:
        sasl = kafka_helpers.sasl_config("PLAIN", user, password)
        pending["SASL_PLAINTEXT"] = (sasl_bootstrap, sasl)

    def ready() -> bool:
        check_alive()
        for listener, (address, config) in list(pending.items()):
            if kafka_helpers.broker_answers(address, **config):
                del pending[listener]
        return not pending

    wait_until(
        ready,
        timeout=max(timeout, 1.0),
        interval=interval,
        what=what or f"{name} to answer metadata requests",
        seen=lambda: f"no answer yet on {sorted(pending)}",
    )


def pva_answers(network: EpicsNetwork, pv: str, check_alive: CheckAlive = _always_alive) -> bool:
    """Whether ``pv`` answers a PVA get on ``network`` right now."""
    check_alive()
    return epics_helpers.pva_probe(network, pv, timeout=0.25)


def wait_pva_answers(
    network: EpicsNetwork, pv: str, *, timeout: float, check_alive: CheckAlive = _always_alive
) -> None:
    wait_until(
        lambda: pva_answers(network, pv, check_alive),
        timeout=timeout,
        what=f"{pv} to answer over PVA",
    )


def wait_ca_answers(
    network: EpicsNetwork, pv: str, *, timeout: float, check_alive: CheckAlive = _always_alive
) -> None:
    """Poll ``pv`` over CA from this process, or, when this process's libca is set up for
    another network, ask once from a fresh process (with its own deadline)."""
    if not epics_helpers.ca_talks_to(network):
        try:
            epics_helpers.caget_in_subprocess(network, pv, timeout=timeout)
        except epics_helpers.EpicsClientError as err:
            raise WaitTimeout(f"{pv} did not answer over CA: {err}") from err
        return

    def ca_answers() -> bool:
        check_alive()
        try:
            epics_helpers.ca_get(pv, timeout=0.5)
        except epics_helpers.EpicsClientError:
            return False
        return True

    wait_until(ca_answers, timeout=timeout, what=f"{pv} to answer over CA")


def wait_ioc_ready(
    network: EpicsNetwork, prefix: str, *, timeout: float, check_alive: CheckAlive
) -> None:
    """The IOC of ioc/test.db under ``prefix`` answers over PVA, then over CA."""
    probe = prefix + IOC_PROBE
    wait_pva_answers(network, probe, timeout=timeout, check_alive=check_alive)
    wait_ca_answers(network, probe, timeout=timeout, check_alive=check_alive)


def wait_table_server_ready(
    network: EpicsNetwork, prefix: str, *, timeout: float, check_alive: CheckAlive
) -> None:
    """The NTTable server under ``prefix`` answers over PVA (it serves no CA)."""
    wait_pva_answers(network, prefix + TABLE_PROBE, timeout=timeout, check_alive=check_alive)
