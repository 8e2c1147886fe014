"""The benchmark's load IOC: counters (and array buffers) that change on every scan.

``bench/load_ioc.db`` holds one block per record kind; ``write_db`` expands them for
``count`` scalars and ``arrays`` arrays into one file, and ``LoadIoc`` serves it with the
rig's own IOC runner (ioc/run_ioc.py through LocalIoc, which waits until CA and PVA answer).
"""

from __future__ import annotations

from pathlib import Path

from helpers.rig.api import EpicsNetwork
from helpers.rig.local.epics_servers import LocalIoc
from helpers.rig.readiness import IOC_PROBE

TEMPLATE = Path(__file__).with_name("load_ioc.db")
SCANS = {10: ".1 second", 5: ".2 second", 2: ".5 second", 1: "1 second"}
# LocalIoc probes this record to know the IOC is up.
PROBE_RECORD = f'record(ao, "$(P){IOC_PROBE}") {{\n    field(VAL, "1")\n}}\n'


def _blocks() -> dict[str, str]:
    """The template's record blocks by their ``#@kind`` marker."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in TEMPLATE.read_text().splitlines():
        if line.startswith("#@"):
            current = line[2:].strip()
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line)
    return {kind: "\n".join(lines) + "\n" for kind, lines in blocks.items()}


def write_db(path: Path, *, count: int, arrays: int = 0, rate_hz: int = 10,
             nelm: int = 1000) -> Path:
    """Expand the template into ``path``: C0..C{count-1} and A0..A{arrays-1}."""
    scan = SCANS[rate_hz]
    blocks = _blocks()
    parts = [PROBE_RECORD]
    for kind, n in (("counter", count), ("array", arrays)):
        text = blocks[kind].replace("$(SCAN)", scan).replace("$(NELM)", str(nelm))
        parts.extend(text.replace("$(N)", str(i)) for i in range(n))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts))
    return path


def counter_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}C{i}" for i in range(count)]


def array_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}A{i}" for i in range(count)]


class LoadIoc(LocalIoc):
    """LocalIoc serving a generated load database instead of ioc/test.db."""

    def __init__(self, prefix: str, network: EpicsNetwork, db_path: Path, *, count: int,
                 arrays: int = 0, rate_hz: int = 10):
        write_db(db_path, count=count, arrays=arrays, rate_hz=rate_hz)
        super().__init__(prefix, network, db=db_path)
        self.count = count
        self.arrays = arrays
        self.rate_hz = rate_hz
