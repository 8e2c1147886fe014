"""Finding and making forwarder builds.

A "build" is a directory the suite can run a forwarder from:
  * ``PATH/bin/forwarder``: our own build, a virtualenv made by ``nox -s build`` (or by
    ``ensure_build`` below);
  * ``PATH/forwarder_launch.py``: a source checkout of another ESS-compatible forwarder, run
    with the interpreter given (``--local-build-python``) or else PATH's own (``.venv``,
    ``venv`` or ``bin``). Never with the suite's interpreter: that one lacks the checkout's
    pinned dependencies, and a run with the wrong librdkafka would test the wrong thing.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helpers.rig.locks import held
from helpers.rig.paths import REPO_ROOT

DEFAULT_BUILD = REPO_ROOT / "build"
_STAMP = ".source-hash"


# Where a source checkout's own interpreter is looked for, in this order.
CHECKOUT_PYTHONS = (".venv/bin/python", "venv/bin/python", "bin/python")
LIBRDKAFKA_PROBE = "import confluent_kafka; print(confluent_kafka.libversion()[0])"


class BuildNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class ForwarderBuild:
    """A build directory and, optionally, the interpreter to run it with (a venv or conda
    env kept elsewhere than the checkout)."""

    path: Path
    python: Path | None = None


def as_build(build: Path | ForwarderBuild) -> ForwarderBuild:
    return build if isinstance(build, ForwarderBuild) else ForwarderBuild(Path(build))


def _checked_python(python: Path) -> Path:
    if not (python.is_file() and python.stat().st_mode & 0o111):
        raise BuildNotFound(f"--local-build-python {python}: no executable interpreter there")
    return python


def build_python(build: Path | ForwarderBuild) -> Path:
    """The interpreter that runs ``build``'s forwarder (the one its dependencies are in)."""
    build = as_build(build)
    path = build.path.resolve()
    if build.python is not None:
        return _checked_python(Path(build.python).absolute())
    if (path / "bin" / "forwarder").is_file():
        return path / "bin" / "python"
    launcher = path / "forwarder_launch.py"
    if not launcher.is_file():
        raise BuildNotFound(
            f"{path} is not a forwarder build: expected {path / 'bin' / 'forwarder'} (made by "
            f"`nox -s build`) or {launcher} (a source checkout of an ESS-compatible forwarder)"
        )
    for candidate in CHECKOUT_PYTHONS:
        if (path / candidate).is_file():
            return path / candidate
    looked = ", ".join(str(path / c) for c in CHECKOUT_PYTHONS)
    raise BuildNotFound(
        f"{path} is a source checkout ({launcher.name}) but has no interpreter of its own: "
        f"looked for {looked}. Make a venv there with its requirements (python3 -m venv "
        f"{path / '.venv'} && {path / '.venv/bin/pip'} install -r {path / 'requirements.txt'}) "
        "or name one with --local-build-python PATH_TO_PYTHON"
    )


def launch_command(build: Path | ForwarderBuild) -> list[str]:
    """The argv prefix that runs the forwarder of ``build``."""
    build = as_build(build)
    path = build.path.resolve()
    python = build_python(build)
    exe = path / "bin" / "forwarder"
    if exe.is_file():
        return [str(exe)] if build.python is None else [str(python), str(exe)]
    return [str(python), str(path / "forwarder_launch.py")]


def librdkafka_version(build: Path | ForwarderBuild, timeout_s: float = 60.0) -> str:
    """The librdkafka version ``build``'s forwarder links (through its confluent-kafka), read
    with its own interpreter; a short reason in parentheses when it cannot be read."""
    try:
        done = subprocess.run(
            [str(build_python(build)), "-c", LIBRDKAFKA_PROBE],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, BuildNotFound) as exc:
        return f"(unknown: {exc})"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"(unknown: {last})"
    return done.stdout.strip()


def source_hash() -> str:
    """A hash of everything that goes into our build, to tell when ./build is stale."""
    digest = hashlib.sha256()
    sources = (REPO_ROOT / "forwarder").rglob("*")
    files = sorted(p for p in sources if p.suffix in (".py", ".c")) + [
        REPO_ROOT / "pyproject.toml",
        REPO_ROOT / "setup.py",
    ]
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_build(build: Path = DEFAULT_BUILD, log=print) -> Path:
    """Make or refresh our own build: a virtualenv with the forwarder installed (not editable).

    The dependencies are installed once; a changed source only reinstalls the forwarder.
    """
    build = Path(build).resolve()
    with held(build.parent / f".{build.name}.lock"):
        return _make_or_refresh(build, log)


def _make_or_refresh(build: Path, log) -> Path:
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
            ignore=shutil.ignore_patterns("__pycache__", "*.so"),  # no in-place build
        )
        for name in ("pyproject.toml", "setup.py"):
            shutil.copy2(REPO_ROOT / name, Path(src) / name)
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
