"""Sessions of the forwarder and its integration suite.

  nox -s tests          what CI runs: lint, unit tests, then the integration suite on the
                        local backend and (where an engine can be had) the docker backend
  nox -s integration    the integration suite; pytest options after `--`, e.g.
                        nox -s integration -- --local-build ./build
  nox -s integration-docker   the same, on the docker backend (starts an engine as root)
  nox -s images         the docker backend's images, built here with nothing pulled
  nox -s unit           the forwarder's unit tests
  nox -s build          ./build: a virtualenv with the forwarder (the "local build")
  nox -s bench          end-to-end benchmark of ./build (-- --quick, -- --compare PATH)
  nox -s clean          remove what earlier runs left behind (-- --logs, -- --images)
  nox -s lint           ruff
"""

from __future__ import annotations

import re
from pathlib import Path

import nox

# Use the interpreter nox runs on; never download one.
nox.options.download_python = "never"
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]

# Every pin but the forwarder's runtime ones (pyproject.toml); it installs the forwarder too.
DEV_REQUIREMENTS = Path(__file__).with_name("requirements-dev.txt")
# The integration suite's parallel workers (pytest-xdist), each with a rig of its own: its
# tests mostly wait on brokers, IOCs and forwarders, so more workers than cores pays (on 2
# cores 3 workers took 5.4 min where 1 took 13.7; 4 were no faster and starved a PVA test).
# `-n 0` after `--` runs it in one process.
INTEGRATION_WORKERS = "3"
# What `nox -s tests` runs of the suite with docker's broker and IOC and the forwarder of
# ./build on the host: the command and status contract, not every fault scenario again.
DOCKER_LOCAL_BUILD_SMOKE = "test_commands or test_status"


def _dev_pin(package: str) -> str:
    """``package==version`` as requirements-dev.txt pins it, for a session needing only it."""
    for line in DEV_REQUIREMENTS.read_text().splitlines():
        if re.match(rf"{re.escape(package)}==", line.strip(), re.IGNORECASE):
            return line.strip()
    raise LookupError(f"{DEV_REQUIREMENTS.name} does not pin {package}")


def _install_rig(session: nox.Session) -> None:
    session.install("--disable-pip-version-check", "-r", str(DEV_REQUIREMENTS))


def _clean(session: nox.Session, *args: str) -> None:
    session.run("python", "-m", "helpers.rig.clean", *args)


def _integration(session: nox.Session, *args: str, junit: str = "integration") -> None:
    session.run(
        "pytest",
        "integration_tests",
        "-p",
        "no:cacheprovider",
        f"--junitxml=logs/junit-{junit}.xml",
        "-o",
        "junit_family=xunit2",
        "--timeout=600",
        "-ra",
        "--numprocesses",
        INTEGRATION_WORKERS,
        # Tests marked xdist_group("machine_load") (3 forwarders with 300 PVs, 100k streams,
        # 1000 PVA subscriptions, the outage under load) run one at a time on one worker,
        # so that they never starve each other of the 2 cores.
        "--dist",
        "loadgroup",
        *args,
    )


@nox.session
def build(session: nox.Session) -> None:
    """Make ./build (or the path given after --), a self-contained forwarder virtualenv."""
    session.run("python", "-m", "helpers.rig.forwarder_build", *(session.posargs or ["build"]))


@nox.session
def integration(session: nox.Session) -> None:
    """The integration suite against a real broker, a real IOC and a real forwarder."""
    _install_rig(session)
    _clean(session)
    _integration(session, *session.posargs)


def _docker_engine(session: nox.Session) -> bool:
    """Make sure a Docker engine answers (as root on Debian, installs and starts one)."""
    try:
        session.run("bash", "docker/ensure_engine.sh", external=True)
    except nox.command.CommandFailed:
        return False
    return True


@nox.session
def images(session: nox.Session) -> None:
    """A Docker engine, and the docker backend's images built with nothing pulled."""
    _install_rig(session)
    session.run("bash", "docker/ensure_engine.sh", external=True)
    session.run(
        "bash", "docker/build_images.sh", *session.posargs, external=True,
        env={"PYTHON": f"{session.bin}/python"},
    )


@nox.session(name="integration-docker")
def integration_docker(session: nox.Session) -> None:
    """The integration suite on the docker backend."""
    _install_rig(session)
    session.run("bash", "docker/ensure_engine.sh", external=True)
    _clean(session)
    _integration(session, "--backend", "docker", *session.posargs, junit="docker")


@nox.session
def unit(session: nox.Session) -> None:
    """The forwarder's unit tests (fakes for EPICS and Kafka) and its EPICS source tests:
    pyproject's pytest testpaths, so a bare `pytest` runs the same."""
    _install_rig(session)
    session.run(
        "pytest", "-p", "no:cacheprovider", "--junitxml=logs/junit-unit.xml", *session.posargs,
    )


@nox.session
def bench(session: nox.Session) -> None:
    """End-to-end benchmark on the real rig: ./build, plus --compare PATH builds side by side.

    Options after --, e.g. nox -s bench -- --quick --scenarios ca-1000x10Hz --compare ../other
    """
    _install_rig(session)
    session.run("python", "-m", "helpers.rig.forwarder_build", "build")
    session.run("python", "-m", "bench.run", *session.posargs)


@nox.session
def clean(session: nox.Session) -> None:
    """Stop leftover processes and remove temp dirs (and, on request, logs and images)."""
    _install_rig(session)
    _clean(session, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("--disable-pip-version-check", _dev_pin("ruff"))
    session.run("ruff", "check", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Everything CI checks, in one venv: lint, unit tests, then the integration suite on the
    local backend and, where a Docker engine answers or can be started, on the docker backend
    against the containerised forwarder, and a smoke subset against ./build with docker's
    broker and IOC (the whole suite three times would not fit CI's hour)."""
    _install_rig(session)
    session.run("ruff", "check", ".")
    session.run("pytest", "-p", "no:cacheprovider", "--junitxml=logs/junit-unit.xml")
    _clean(session)
    _integration(session, "--backend", "local", *session.posargs, junit="local")
    if not _docker_engine(session):
        session.warn("no Docker engine answers or can be started here: the docker backend "
                     "was NOT tested")
        return
    _clean(session)
    _integration(session, "--backend", "docker", *session.posargs, junit="docker")
    session.run("python", "-m", "helpers.rig.forwarder_build", "build")
    _integration(session, "--backend", "docker", "--local-build", "build",
                 "-k", DOCKER_LOCAL_BUILD_SMOKE, *session.posargs, junit="docker-local-build")
    _clean(session)
