"""Finding and making forwarder builds.

A "build" is a directory the suite can run a forwarder from:
  * ``PATH/bin/forwarder``: our own build, a virtualenv made by ``nox -s build`` (or by
    ``ensure_build`` below);
  * ``PATH/forwarder_launch.py``: a source checkout of another ESS-compatible forwarder, run
    with PATH's own interpreter when it has one (``.venv``, ``venv`` or ``bin``), else with
    the interpreter running the suite.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers.rig.paths import REPO_ROOT

DEFAULT_BUILD = REPO_ROOT / "build"
_STAMP = ".source-hash"


class BuildNotFound(RuntimeError):
    pass


def launch_command(build: Path) -> list[str]:
    """The argv prefix that runs the forwarder of ``build``."""
    build = Path(build).resolve()
    exe = build / "bin" / "forwarder"
    if exe.is_file():
        return [str(exe)]
    launcher = build / "forwarder_launch.py"
    if launcher.is_file():
        for candidate in (".venv/bin/python", "venv/bin/python", "bin/python"):
            python = build / candidate
            if python.is_file():
                return [str(python), str(launcher)]
        return [sys.executable, str(launcher)]
    raise BuildNotFound(
        f"{build} is not a forwarder build: expected {exe} (made by `nox -s build`) "
        f"or {launcher} (a source checkout of an ESS-compatible forwarder)"
    )


def source_hash() -> str:
    """A hash of everything that goes into our build, to tell when ./build is stale."""
    digest = hashlib.sha256()
    files = sorted((REPO_ROOT / "forwarder").rglob("*.py")) + [REPO_ROOT / "pyproject.toml"]
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_build(build: Path = DEFAULT_BUILD, log=print) -> Path:
    """Make or refresh our own build: a virtualenv with the forwarder installed (not editable).

    The dependencies are installed once; a changed source only reinstalls the forwarder.
    """
    build = Path(build).resolve()
    wanted = source_hash()
    stamp = build / _STAMP
    if (build / "bin" / "forwarder").is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return build
    python = build / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory(prefix="fwd-build-src-") as src:
        # setuptools builds in a "build/" folder beside the sources: build from a copy, so
        # it never writes into our ./build virtualenv.
        shutil.copytree(
            REPO_ROOT / "forwarder",
            Path(src) / "forwarder",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        shutil.copy2(REPO_ROOT / "pyproject.toml", Path(src) / "pyproject.toml")
        if not python.is_file():
            log(f"build: creating {build} (a virtualenv with the forwarder and its pinned deps)")
            subprocess.run([sys.executable, "-m", "venv", str(build)], check=True)
            subprocess.run([*pip, src], check=True)
        else:
            log(f"build: refreshing the forwarder in {build} (its sources changed)")
            subprocess.run([*pip, "--no-deps", "--force-reinstall", src], check=True)
    stamp.write_text(wanted)
    return build


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_BUILD
    print(ensure_build(target))
