"""`python -m helpers.rig.docker.clean` removes the suite's leftovers and nothing else.

Runs on its own engine resources (a made-up run id), so it never touches the session's rig.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from helpers.rig.docker.compose import OWNER_LABEL, RUN_LABEL, SUITE_LABEL, owner_id
from helpers.rig.docker.engine import engine_answers
from helpers.rig.paths import REPO_ROOT

pytestmark = pytest.mark.rig


BASE_IMAGE = "forwarder-rig/debian-base:bookworm"
DEAD_OWNER = "999999999-1"  # no such pid: the owner of a crashed run


def docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def image() -> str:
    ok, why = engine_answers()
    if not ok:
        pytest.skip(f"needs a Docker engine: {why}")
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode:
        built = subprocess.run(["bash", str(REPO_ROOT / "docker/base/build_base_image.sh")],
                               capture_output=True, text=True, timeout=1200)
        if built.returncode:
            pytest.skip(f"no {BASE_IMAGE} and it cannot be built here: {built.stderr[-500:]}")
    return BASE_IMAGE


def exists(kind: str, ident: str) -> bool:
    return subprocess.run(["docker", kind, "inspect", ident], capture_output=True).returncode == 0


def running(ident: str) -> bool:
    return docker("inspect", "--format", "{{.State.Running}}", ident, check=False) == "true"


def test_clean_removes_labelled_leftovers_only(image):
    run = f"test-clean-{uuid.uuid4().hex[:8]}"
    suite = ["--label", f"{SUITE_LABEL}=1", "--label", f"{RUN_LABEL}={run}"]
    made: list[tuple[str, str]] = []
    try:
        # Carries the run label but not the suite label: only the suite label may decide.
        bystander = docker("run", "-d", "--label", f"{RUN_LABEL}={run}", image, "sleep", "600")
        made.append(("container", bystander))
        assert SUITE_LABEL not in docker("inspect", "--format", "{{json .Config.Labels}}",
                                         bystander), f"{image} itself has the suite label"
        leftover = docker("run", "-d", *suite, "--label", f"{OWNER_LABEL}={DEAD_OWNER}",
                          image, "sleep", "600")
        made.append(("container", leftover))
        live = docker("run", "-d", *suite, "--label", f"{OWNER_LABEL}={owner_id()}",
                      image, "sleep", "600")
        made.append(("container", live))
        volume = docker("volume", "create", *suite)
        made.append(("volume", volume))
        network = docker("network", "create", *suite, f"fwdrig-{run}")
        made.append(("network", network))

        done = subprocess.run([sys.executable, "-m", "helpers.rig.docker.clean", "--run", run],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

        assert not exists("container", leftover), f"leftover survived:\n{done.stdout}"
        assert not exists("volume", volume), f"labelled volume survived:\n{done.stdout}"
        assert not exists("network", network), f"labelled network survived:\n{done.stdout}"
        assert running(bystander), f"unlabelled container was touched:\n{done.stdout}"
        assert running(live), f"container of a live run was removed:\n{done.stdout}"
    finally:
        for kind, ident in reversed(made):
            if exists(kind, ident):
                args = ["rm", "-f"] if kind == "container" else [kind, "rm"]
                docker(*args, ident, check=False)
