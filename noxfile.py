"""Sessions of the forwarder and its integration suite.

  nox -s tests          what CI runs: lint, unit tests, rig contract tests, integration suite
  nox -s integration    the integration suite; pytest options after `--`, e.g.
                        nox -s integration -- --local-build ./build
  nox -s unit           the forwarder's unit tests
  nox -s build          ./build: a virtualenv with the forwarder (the "local build")
  nox -s clean          remove what earlier runs left behind (-- --logs, -- --images)
  nox -s lint           ruff
"""

from __future__ import annotations

import nox

# Use the interpreter nox runs on; never download one.
nox.options.download_python = "never"
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]

RIG_REQUIREMENTS = ("-r", "requirements-dev.txt")


def _install_rig(session: nox.Session) -> None:
    session.install("--disable-pip-version-check", *RIG_REQUIREMENTS)


def _clean(session: nox.Session, *args: str) -> None:
    session.run("python", "-m", "helpers.rig.clean", *args)


def _integration(session: nox.Session, *args: str) -> None:
    session.run(
        "pytest",
        "integration_tests",
        "-p",
        "no:cacheprovider",
        "--junitxml=logs/junit-integration.xml",
        "-o",
        "junit_family=xunit2",
        "--timeout=600",
        "-ra",
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


@nox.session
def unit(session: nox.Session) -> None:
    """The forwarder's unit tests (fakes for EPICS and Kafka)."""
    _install_rig(session)
    session.install("--disable-pip-version-check", "-e", ".")
    session.run(
        "pytest", "tests/unit", "-p", "no:cacheprovider",
        "--junitxml=logs/junit-unit.xml", *session.posargs,
    )


@nox.session
def clean(session: nox.Session) -> None:
    """Stop leftover processes and remove temp dirs (and, on request, logs and images)."""
    _install_rig(session)
    _clean(session, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("--disable-pip-version-check", "ruff==0.17.6")
    session.run("ruff", "check", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Everything CI checks, in one venv: lint, unit tests, then the integration suite."""
    _install_rig(session)
    session.install("--disable-pip-version-check", "-e", ".")
    session.run("ruff", "check", ".")
    session.run(
        "pytest", "tests/unit", "-p", "no:cacheprovider", "--junitxml=logs/junit-unit.xml",
    )
    _clean(session)
    _integration(session, *session.posargs)
    _clean(session)
