"""Where log lines go and how verbose they are, from the ESS verbosity names."""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

VERBOSITY_LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def verbosity_level(name: str) -> int:
    """The logging level for an ESS verbosity name (case-insensitive); raise ValueError."""
    try:
        return VERBOSITY_LEVELS[name.strip().lower()]
    except KeyError:
        choices = ", ".join(n.capitalize() for n in VERBOSITY_LEVELS)
        raise ValueError(f"unknown verbosity {name!r} (use one of {choices})") from None


def setup_logging(level: int, log_file: str | None = None) -> logging.Handler:
    """Send the root logger to ``log_file`` (appended) or stderr; return the handler."""
    if log_file:
        handler: logging.Handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
