"""A pythonSoftIOC serving sources_test.db; run as a subprocess, stopped by SIGINT/SIGTERM.

Usage: run_test_ioc.py PREFIX [MACROS]   (MACROS like "COUNTER_SCAN=.001 second")
The CA/PVA server ports come from the EPICS_CAS_* / EPICS_PVAS_* environment.
"""

from __future__ import annotations

import sys
from pathlib import Path

from softioc import asyncio_dispatcher, softioc

DB = Path(__file__).with_name("sources_test.db")


def main() -> None:
    prefix = sys.argv[1]
    macros = f"P={prefix}" + (f",{sys.argv[2]}" if len(sys.argv) > 2 else "")
    dispatcher = asyncio_dispatcher.AsyncioDispatcher()
    softioc.dbLoadDatabase(str(DB), substitutions=macros)
    softioc.iocInit(dispatcher, enable_pva=False)
    print("test IOC running", flush=True)
    softioc.non_interactive_ioc()


if __name__ == "__main__":
    main()
