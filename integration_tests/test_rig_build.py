"""Which forwarder the rig runs: a build or a source checkout, with which interpreter, and
what the run header says about it. A checkout without an interpreter must stop the run
before any test, rather than run with the suite's own interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.rig.backend import choose_backend
from helpers.rig.forwarder_build import (
    BuildNotFound,
    ForwarderBuild,
    launch_command,
    librdkafka_version,
)
from helpers.rig.paths import REPO_ROOT

pytestmark = pytest.mark.rig


def _checkout(root: Path, python: str | None = None) -> Path:
    """A directory shaped like an ESS-compatible source checkout, optionally with a venv
    interpreter (a script that execs ``python``: a symlink would lose ``python``'s venv)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "forwarder_launch.py").write_text("raise SystemExit('not a real forwarder')\n")
    if python:
        (root / ".venv" / "bin").mkdir(parents=True)
        interpreter = root / ".venv" / "bin" / "python"
        interpreter.write_text(f'#!/bin/sh\nexec "{python}" "$@"\n')
        interpreter.chmod(0o755)
    return root


def test_checkout_without_an_interpreter_names_what_was_looked_for(tmp_path):
    checkout = _checkout(tmp_path / "fwd")
    with pytest.raises(BuildNotFound) as error:
        launch_command(checkout)
    message = str(error.value)
    for looked in (".venv/bin/python", "venv/bin/python", "bin/python"):
        assert str(checkout / looked) in message, message
    assert "--local-build-python" in message, message


def test_checkout_runs_with_its_own_venv_interpreter(tmp_path):
    checkout = _checkout(tmp_path / "fwd", python=sys.executable)
    assert launch_command(checkout) == [
        str(checkout / ".venv/bin/python"),
        str(checkout / "forwarder_launch.py"),
    ]


def test_an_explicit_interpreter_wins_over_the_checkout_one(tmp_path):
    checkout = _checkout(tmp_path / "fwd", python=sys.executable)
    elsewhere = Path(sys.executable).absolute()
    argv = launch_command(ForwarderBuild(checkout, elsewhere))
    assert argv == [str(elsewhere), str(checkout / "forwarder_launch.py")]


def test_an_explicit_interpreter_that_is_not_there_is_refused(tmp_path):
    checkout = _checkout(tmp_path / "fwd")
    with pytest.raises(BuildNotFound, match="no executable interpreter"):
        launch_command(ForwarderBuild(checkout, tmp_path / "no-python"))


def test_librdkafka_version_is_read_with_the_build_interpreter(tmp_path):
    import confluent_kafka

    checkout = _checkout(tmp_path / "fwd", python=sys.executable)
    assert librdkafka_version(checkout) == confluent_kafka.libversion()[0]
    broken = _checkout(tmp_path / "broken", python="/bin/false")
    assert librdkafka_version(broken).startswith("(unknown")


def _collect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "integration_tests", "-p", "no:cacheprovider",
         "--backend", "local", "--collect-only", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_local_build_checkout_without_interpreter_stops_the_run_before_any_test(tmp_path):
    checkout = _checkout(tmp_path / "fwd")
    done = _collect("--local-build", str(checkout))
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert str(checkout / ".venv/bin/python") in output, output
    assert "collected" not in output, output


def test_run_header_names_the_forwarder_and_its_librdkafka(tmp_path):
    import confluent_kafka

    checkout = _checkout(tmp_path / "fwd")
    done = _collect(
        "--local-build", str(checkout), "--local-build-python", sys.executable, "-k", "no_such"
    )
    output = done.stdout + done.stderr
    expected = f"forwarder under test: {Path(sys.executable).absolute()} {checkout}"
    assert expected in output, output
    assert f"(librdkafka {confluent_kafka.libversion()[0]})" in output, output


def test_backend_reason_says_things_once():
    reason = choose_backend("auto").reason
    assert reason.count("Docker engine") <= 1 and "((" not in reason, reason
