"""Processes and temp dirs the rig starts, and the registry that lets `nox -s clean` find them.

Every process runs in its own process group with its output in a log file. Each one is
recorded under ``.rig/processes/`` (pid, process-group id, kernel start time, command line)
so that a later clean can stop leftovers of a crashed run, and only those: a record whose
pid now belongs to another process (different start time) is ignored.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from helpers.rig.paths import LOG_DIR, STATE_DIR, run_id

PROCESS_DIR = STATE_DIR / "processes"
TEMPDIR_DIR = STATE_DIR / "tempdirs"

# Bounded waits of the orderly teardown: interrupt, then terminate, then kill.
STOP_WAITS = ((signal.SIGINT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0))

_live: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


def _start_ticks(pid: int) -> str | None:
    """The kernel start time of ``pid`` (field 22 of /proc/pid/stat), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


class ManagedProcess:
    """A child process in its own group, logged to a file, recorded for clean-up."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        log_path: Path | None = None,
        stop_signals: Sequence[tuple[signal.Signals, float]] = STOP_WAITS,
    ):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.log_path = log_path or LOG_DIR / run_id() / f"{name}.log"
        self.stop_signals = tuple(stop_signals)
        self.popen: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def is_running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def start(self) -> ManagedProcess:
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session, hence own process group
            )
        self._record()
        _live.add(self)
        return self

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the whole process group."""
        if self.popen is not None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> int | None:
        """Orderly stop of the whole group; returns the exit code of the main process."""
        if self.popen is None:
            return None
        for sig, wait in self.stop_signals:
            if self.popen.poll() is not None and not _group_alive(self.popen.pid):
                break
            self.signal(sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self.popen.poll() is not None and not _group_alive(self.popen.pid):
                    break
                time.sleep(0.05)
        self.popen.wait(timeout=5)
        self._unrecord()
        _live.discard(self)
        return self.popen.returncode

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    # -- registry -------------------------------------------------------------------------

    def _record_path(self) -> Path:
        return PROCESS_DIR / f"{self.popen.pid}.json"

    def _record(self) -> None:
        PROCESS_DIR.mkdir(parents=True, exist_ok=True)
        record = {
            "name": self.name,
            "pid": self.popen.pid,
            "pgid": self.popen.pid,
            "start_ticks": _start_ticks(self.popen.pid),
            "argv": self.argv,
            "run_id": run_id(),
            "owner_pid": os.getpid(),
        }
        self._record_path().write_text(json.dumps(record))

    def _unrecord(self) -> None:
        try:
            self._record_path().unlink()
        except FileNotFoundError:
            pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ("" if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def make_temp_dir(prefix: str) -> Path:
    """A temp dir recorded for clean-up; remove it with ``remove_temp_dir``."""
    path = Path(tempfile.mkdtemp(prefix=f"fwd-rig-{prefix}-"))
    TEMPDIR_DIR.mkdir(parents=True, exist_ok=True)
    (TEMPDIR_DIR / path.name).write_text(json.dumps({"path": str(path), "run_id": run_id()}))
    return path


def remove_temp_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    try:
        (TEMPDIR_DIR / path.name).unlink()
    except FileNotFoundError:
        pass


def stop_all() -> None:
    """Stop every process this interpreter started and has not stopped yet."""
    for proc in list(_live):
        try:
            proc.stop()
        except Exception:  # noqa: BLE001 - best effort at exit, keep stopping the others
            pass


atexit.register(stop_all)


def clean_leftovers(log=print) -> int:
    """Stop recorded processes of earlier runs and remove their temp dirs.

    Only what the registry names, and only a pid whose kernel start time still matches the
    record, so a recycled pid is never touched. Returns how many things were removed.
    """
    removed = 0
    for record_file in sorted(PROCESS_DIR.glob("*.json")) if PROCESS_DIR.exists() else []:
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            record_file.unlink(missing_ok=True)
            continue
        pid, pgid = record["pid"], record["pgid"]
        if _start_ticks(pid) == record["start_ticks"] and record["start_ticks"] is not None:
            log(f"clean: stopping leftover {record['name']} (pid {pid}, run {record['run_id']})")
            for sig, wait in STOP_WAITS[1:]:
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and _group_alive(pgid):
                    time.sleep(0.05)
                if not _group_alive(pgid):
                    break
            removed += 1
        record_file.unlink(missing_ok=True)
    for record_file in sorted(TEMPDIR_DIR.glob("*")) if TEMPDIR_DIR.exists() else []:
        try:
            path = Path(json.loads(record_file.read_text())["path"])
        except (OSError, ValueError, KeyError):
            record_file.unlink(missing_ok=True)
            continue
        if path.exists() and path.name.startswith("fwd-rig-"):
            log(f"clean: removing leftover temp dir {path}")
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        record_file.unlink(missing_ok=True)
    return removed
