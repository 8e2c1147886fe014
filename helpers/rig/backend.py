"""Choosing the backend (local processes or docker) and the forwarder build under test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from helpers.rig.api import Rig
from helpers.rig.forwarder_build import ForwarderBuild


@dataclass(frozen=True)
class Choice:
    backend: str  # "local" or "docker"
    reason: str


def docker_engine_status() -> tuple[bool, str]:
    """Whether a Docker engine answers (and the docker backend is available), and why not."""
    try:
        from helpers.rig.docker.engine import engine_available
    except ImportError as exc:
        return False, f"the docker backend is not installed ({exc})"
    return engine_available()


def choose_backend(requested: str) -> Choice:
    if requested == "local":
        return Choice("local", "--backend local was given")
    ok, why = docker_engine_status()
    if requested == "docker":
        if not ok:
            raise RuntimeError(f"--backend docker was given, but {why}")
        return Choice("docker", "--backend docker was given")
    # ``why`` is already a whole phrase ("Docker engine 27.1", "no Docker engine answers
    # (...)"): wrapping it again made the banner repeat itself.
    if ok:
        return Choice("docker", f"{why} answers")
    return Choice("local", why)


def make_rig(
    choice: Choice, *, local_build: Path | ForwarderBuild | None, kafka_bootstrap: str | None
) -> Rig:
    """The rig for ``choice``. ``local_build`` None means: the containerised forwarder on the
    docker backend, and our own ./build (made here if needed) on the local one."""
    if choice.backend == "docker":
        from helpers.rig.docker.rig import DockerRig

        return DockerRig(forwarder_build=local_build, kafka_bootstrap=kafka_bootstrap)
    from helpers.rig.local.rig import LocalRig

    return LocalRig(forwarder_build=local_build, kafka_bootstrap=kafka_bootstrap)
