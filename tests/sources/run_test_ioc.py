"""A pythonSoftIOC serving sources_test.db; run as a subprocess, stopped by SIGINT/SIGTERM.

Usage: run_test_ioc.py [--pva] PREFIX [MACROS]   (MACROS like "COUNTER_SCAN=1 second")
--pva also serves the records over PV Access (QSRV). The CA/PVA server ports come from the
EPICS_CAS_* / EPICS_PVAS_* environment.
"""

from __future__ import annotations

import sys
from pathlib import Path

from softioc import asyncio_dispatcher, softioc

DB = Path(__file__).with_name("sources_test.db")


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--pva"]
    prefix = args[0]
    macros = f"P={prefix}" + (f",{args[1]}" if len(args) > 1 else "")
    dispatcher = asyncio_dispatcher.AsyncioDispatcher()
    softioc.dbLoadDatabase(str(DB), substitutions=macros)
    softioc.iocInit(dispatcher, enable_pva="--pva" in sys.argv)
    print("test IOC running", flush=True)
    softioc.non_interactive_ioc()


if __name__ == "__main__":
    main()
