"""Serve the rig's NTTable PVs over PVA (pythonSoftIOC has no NTTable records).

Run as ``python ioc/table_server.py --prefix T1:`` with the EPICS server environment of an
EpicsNetwork. A put to a table is posted as its new value (stamped with the current time),
so tests can change a table with an ordinary PVA put. Serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

READY_LINE = "Table server ready"

# Columns of the se00/senv tables: sample value and its timestamp in ns since the epoch.
SAMPLE_COLUMNS = [("value", "d"), ("timestamp", "L")]
# senv carries integer samples only, so it needs a table with an integer value column.
INT_SAMPLE_COLUMNS = [("value", "l"), ("timestamp", "L")]
# Suffixes of the served tables; the initial rows of each.
TABLE = "TABLE"
EMPTY_TABLE = "EMPTY_TABLE"
INT_TABLE = "INT_TABLE"


def initial_rows(now_ns: int) -> dict[str, list[dict]]:
    """Initial rows per table suffix: three samples 1 ms apart, and none."""
    return {
        TABLE: [{"value": 1.5 + i, "timestamp": now_ns + i * 1_000_000} for i in range(3)],
        EMPTY_TABLE: [],
        INT_TABLE: [{"value": 10 * (i + 1), "timestamp": now_ns + i * 1_000_000} for i in range(3)],
    }


def columns(suffix: str) -> list[tuple[str, str]]:
    """The column types of table ``suffix``."""
    return INT_SAMPLE_COLUMNS if suffix == INT_TABLE else SAMPLE_COLUMNS


def _stamp(value, now: float) -> None:
    """Set the NT timeStamp of ``value`` to ``now`` (seconds since the epoch)."""
    seconds = int(now)
    value["timeStamp.secondsPastEpoch"] = seconds
    value["timeStamp.nanoseconds"] = int((now - seconds) * 1e9)


class PostPuts:
    """SharedPV handler: a client's put becomes the PV's new value."""

    def put(self, pv, op) -> None:
        value = op.value()
        _stamp(value, time.time())
        pv.post(value)
        op.done()


def make_pvs(prefix: str) -> dict:
    """PV name -> SharedPV for every table, each starting with its initial rows."""
    from p4p.nt import NTTable
    from p4p.server.thread import SharedPV

    now = time.time()
    pvs = {}
    for suffix, rows in initial_rows(int(now * 1e9)).items():
        value = NTTable(columns(suffix)).wrap(rows)
        # wrap() leaves out columns without rows; an empty table still has both columns.
        for name, _ in columns(suffix):
            value[f"value.{name}"] = [row[name] for row in rows]
        _stamp(value, now)
        pvs[prefix + suffix] = SharedPV(handler=PostPuts(), initial=value)
    return pvs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True, help="PV prefix")
    args = parser.parse_args(argv)

    from p4p.server import Server

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pvs = make_pvs(args.prefix)
    with Server(providers=[pvs]) as server:
        conf = server.conf()
        ports = {k: conf.get(k) for k in ("EPICS_PVAS_SERVER_PORT", "EPICS_PVAS_BROADCAST_PORT")}
        print(f"{READY_LINE}: {sorted(pvs)} {ports}", flush=True)
        stop.wait()
    print("Table server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
