"""Free local ports for a rig, so two rigs (or two test runs) on one machine never meet.

EPICS uses each of its ports for both TCP and UDP (CA server and search, PVA server and
broadcast), so an EPICS port must be free for both protocols at once.
"""

from __future__ import annotations

import socket

from helpers.rig.api import EpicsNetwork

HOST = "127.0.0.1"


def free_tcp_port(host: str = HOST) -> int:
    """A TCP port that nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_tcp_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now (picked by the kernel,
    all held open together so that none is given twice)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _free_for_tcp_and_udp(host: str) -> int | None:
    """A port the kernel gives for TCP that is also free for UDP, or None to try again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind((host, 0))
        port = tcp.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((host, port))
            except OSError:
                return None
    return port


def free_tcp_udp_port(host: str = HOST, exclude: set[int] = frozenset()) -> int:
    """A port free for both TCP and UDP on ``host`` and not in ``exclude``."""
    for _ in range(200):
        port = _free_for_tcp_and_udp(host)
        if port is not None and port not in exclude:
            return port
    raise RuntimeError(f"found no port free for both TCP and UDP on {host}")


def allocate_epics_network(host: str = HOST) -> EpicsNetwork:
    """An EpicsNetwork of four distinct ports, each free for TCP and UDP on ``host``."""
    ports: set[int] = set()
    chosen = []
    for _ in range(4):
        port = free_tcp_udp_port(host, exclude=ports)
        ports.add(port)
        chosen.append(port)
    ca_server, ca_repeater, pva_server, pva_broadcast = chosen
    return EpicsNetwork(
        ca_server_port=ca_server,
        ca_repeater_port=ca_repeater,
        pva_server_port=pva_server,
        pva_broadcast_port=pva_broadcast,
        host=host,
    )
