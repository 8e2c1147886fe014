"""Free local ports for a rig, so two rigs (or two test runs) on one machine never meet.

EPICS uses each of its ports for both TCP and UDP (CA server and search, PVA server and
broadcast), so an EPICS port must be free for both protocols at once.

The ports the rig's servers listen on (brokers, IOCs) come from below the kernel's
ephemeral range, where it never hands one to an outgoing connection: a port picked there
(by binding port 0) was free when picked, but a forwarder's or client's connection could
take it before the server bound it, and a CA server then cannot start ("CAS: No TCP server
started", seen once in CI). Each such port is also reserved machine-wide for the life of the
process that picked it (a lock file), so parallel workers never pick the same one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import socket
from pathlib import Path

from helpers.rig.api import EpicsNetwork

HOST = "127.0.0.1"
RESERVED_LOW = 20000  # the rig's server ports: from here up to the ephemeral range
RESERVATIONS = Path("/tmp/forwarder-rig-ports")
_held: list[int] = []  # lock file descriptors of this process's reservations
_reserved_here: set[int] = set()


def free_tcp_port(host: str = HOST) -> int:
    """A TCP port that nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_tcp_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct ports for a server of the rig (a broker's listeners), reserved and
    free on ``host`` right now (see the module doc)."""
    ports: set[int] = set()
    chosen = []
    for _ in range(count):
        port = free_tcp_udp_port(host, exclude=ports)
        ports.add(port)
        chosen.append(port)
    return chosen


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _reserve(port: int) -> bool:
    """Take this machine's reservation of ``port`` for the life of this process."""
    RESERVATIONS.mkdir(parents=True, exist_ok=True)
    path = RESERVATIONS / f"{port}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # A clean may have removed the file between our open and lock: then this lock
        # guards nothing and another process could take the port with a new file.
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            os.close(fd)
            return False
    except FileNotFoundError:
        os.close(fd)
        return False
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    _held.append(fd)
    return True


def remove_stale_reservations() -> int:
    """Remove the lock files no live process holds; returns how many."""
    removed = 0
    for path in sorted(RESERVATIONS.glob("*.lock")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # held: a live reservation
            continue
        try:
            path.unlink()  # under our lock, so nobody is between lock and check on it
            removed += 1
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return removed


def _free_now(host: str, port: int) -> bool:
    """Nobody listens on ``port`` for TCP or UDP right now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def _free_for_tcp_and_udp(host: str) -> int | None:
    """A reserved port below the ephemeral range, free for TCP and UDP; or, where the range
    leaves no room below it, one the kernel gives. None: try again."""
    high = _ephemeral_low()
    if high - RESERVED_LOW < 1000:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
        return port if _free_now(host, port) else None
    port = random.randrange(RESERVED_LOW, high)
    if port in _reserved_here or not _reserve(port):
        return None
    _reserved_here.add(port)
    if not _free_now(host, port):
        return None  # in use by something else: keep the reservation, never pick it again
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
