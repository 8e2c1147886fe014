"""The images of the docker backend: their tags, and building them once per session.

docker/build_images.sh does the work (nothing pulled, layers cached); a warm run takes a
second or two, so the rig runs it before the first container of a session instead of
trusting whatever images happen to be there. ``RIG_DOCKER_BUILD=0`` skips it (images made
elsewhere and loaded with ``docker load``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from helpers.rig.locks import held
from helpers.rig.paths import LOG_DIR, REPO_ROOT, run_id

KAFKA_IMAGE = "forwarder-rig/kafka:4.1.1"
IOC_IMAGE = "forwarder-rig/ioc:latest"
BUILD_TIMEOUT_S = 1800

_built: set[str] = set()


class ImageBuildError(RuntimeError):
    pass


def forwarder_tag() -> str:
    """``forwarder-rig/forwarder:<git rev>[-dirty]``; ``:latest`` outside a git checkout."""
    git = ["git", "-C", str(REPO_ROOT)]
    rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if rev.returncode != 0:
        return "forwarder-rig/forwarder:latest"
    status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    dirty = "-dirty" if status.stdout.strip() else ""
    return f"forwarder-rig/forwarder:{rev.stdout.strip()}{dirty}"


def forwarder_image() -> str:
    """The forwarder image to test: ``RIG_FORWARDER_IMAGE`` if set; ``:latest`` when the rig
    does not build (``RIG_DOCKER_BUILD=0``, loaded images); else this checkout's tag."""
    if os.environ.get("RIG_FORWARDER_IMAGE"):
        return os.environ["RIG_FORWARDER_IMAGE"]
    if os.environ.get("RIG_DOCKER_BUILD") == "0":
        return "forwarder-rig/forwarder:latest"
    return forwarder_tag()


def ensure_images(*names: str, forwarder_image: str | None = None) -> None:
    """Build (or confirm cached) the named images: kafka, ioc, forwarder; once per session."""
    wanted = [n for n in names if n not in _built]
    if not wanted or os.environ.get("RIG_DOCKER_BUILD") == "0":
        return
    log_path = LOG_DIR / run_id() / "docker-build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHON": sys.executable}
    if forwarder_image:
        env["FORWARDER_IMAGE"] = forwarder_image
    began = time.monotonic()
    with held(LOG_DIR / ".docker-build.lock"), open(log_path, "a") as log:
        log.write(f"=== {time.strftime('%H:%M:%S')} docker/build_images.sh {' '.join(wanted)}\n")
        log.flush()
        try:
            done = subprocess.run(
                ["bash", str(REPO_ROOT / "docker" / "build_images.sh"), *wanted],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ImageBuildError(f"building {wanted} took over {BUILD_TIMEOUT_S}s") from exc
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-30:])
        raise ImageBuildError(f"building images {wanted} failed; {log_path}:\n{tail}")
    with open(log_path, "a") as log:
        log.write(f"=== built {wanted} in {time.monotonic() - began:.1f}s\n")
    _built.update(wanted)
