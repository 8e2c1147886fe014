"""The rig's server ports: below the kernel's ephemeral range, and reserved machine-wide."""

from __future__ import annotations

import subprocess
import sys

from helpers.rig import ports
from helpers.rig.ports import RESERVED_LOW, _ephemeral_low, allocate_epics_network, free_tcp_ports


def test_server_ports_come_from_below_the_ephemeral_range_and_are_distinct():
    network = allocate_epics_network()
    ports = [
        network.ca_server_port,
        network.ca_repeater_port,
        network.pva_server_port,
        network.pva_broadcast_port,
        *free_tcp_ports(3),
    ]
    assert len(set(ports)) == len(ports)
    assert all(RESERVED_LOW <= port < _ephemeral_low() for port in ports), ports


def test_another_process_cannot_reserve_a_port_this_one_picked():
    (port,) = free_tcp_ports(1)
    other = subprocess.run(
        [sys.executable, "-c", f"from helpers.rig.ports import _reserve; print(_reserve({port}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == "False"


def test_clean_removes_the_reservation_files_of_dead_processes_only(tmp_path, monkeypatch):
    monkeypatch.setattr(ports, "RESERVATIONS", tmp_path)
    assert ports._reserve(20001)  # held by this process, alive
    code = (
        "import sys; from pathlib import Path; from helpers.rig import ports; "
        "ports.RESERVATIONS = Path(sys.argv[1]); print(ports._reserve(20002))"
    )
    dead = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert dead.stdout.strip() == "True"  # and its process has exited since
    (tmp_path / "20003.lock").touch()  # never locked
    assert ports.remove_stale_reservations() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20001.lock"]
