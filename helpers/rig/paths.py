"""Where the rig keeps logs, state and caches."""

from __future__ import annotations

import os
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = Path(os.environ.get("RIG_LOG_DIR", REPO_ROOT / "logs"))
STATE_DIR = Path(os.environ.get("RIG_STATE_DIR", REPO_ROOT / ".rig"))
# Downloaded artefacts (the Kafka jars); outside git, shared between clones of one user.
CACHE_DIR = Path(os.environ.get("RIG_CACHE_DIR", Path.home() / ".cache" / "forwarder-rig"))
CONFIG_FILES = REPO_ROOT / "config-files"
IOC_DIR = REPO_ROOT / "ioc"

_RUN_ID = os.environ.get("RIG_RUN_ID") or f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def run_id() -> str:
    """One id per test run (per interpreter), used for log folders and registry records."""
    return _RUN_ID


def part_log_path(name: str) -> Path:
    """logs/<run>/<name>.log: where the rig keeps the log of its part ``name``."""
    return LOG_DIR / run_id() / f"{name}.log"
