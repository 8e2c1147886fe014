"""Run the rig's IOC: the records of a database file served over CA and PVA.

Run as ``python ioc/run_ioc.py --prefix T1: --db ioc/test.db`` with the EPICS server
environment of an EpicsNetwork. No shell: it serves until SIGINT or SIGTERM, then exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

READY_LINE = "IOC ready"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True, help="PV prefix, the P macro of the db")
    parser.add_argument("--db", type=Path, required=True, help="database file to load")
    args = parser.parse_args(argv)
    if not args.db.is_file():
        print(f"run_ioc: no database file at {args.db}", file=sys.stderr)
        return 2

    # Imported here: softioc loads the EPICS libraries (and reads the env) on import.
    from softioc import asyncio_dispatcher, softioc

    db = args.db.resolve()
    softioc.dbLoadDatabase(db.name, str(db.parent), f"P={args.prefix}")
    dispatcher = asyncio_dispatcher.AsyncioDispatcher()
    softioc.iocInit(dispatcher, enable_pva=True)
    ca_port = os.environ.get("EPICS_CAS_SERVER_PORT", "default")
    pva_port = os.environ.get("EPICS_PVAS_SERVER_PORT", "default")
    print(
        f"{READY_LINE}: prefix {args.prefix}, db {db}, CA port {ca_port}, PVA port {pva_port}",
        flush=True,
    )
    # Waits for SIGINT/SIGTERM, then calls epicsExit (which exits the process with 0).
    softioc.non_interactive_ioc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
