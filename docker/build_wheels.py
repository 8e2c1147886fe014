"""Build on the host the wheels an image installs, so no image build needs PyPI.

pip inside a container cannot verify PyPI here without the host's CA bundle; wheels built
on the host (bookworm, x86_64, Python 3.11, like the image) install offline instead. Each
set goes to docker/wheels/<set>/ with its requirements.txt. A set is rebuilt only when its
requirements changed (a stamp file), so its files stay byte-identical and the image layer
that copies them stays cached.

    python docker/build_wheels.py forwarder ioc
    python docker/build_wheels.py --print ioc   # only the requirements (for a Dockerfile)

The sets take their pins from where they are set: pyproject.toml (the forwarder's runtime
dependencies) and requirements-dev.txt (the rig's), never from a copy here.
"""

from __future__ import annotations

import hashlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / "docker" / "wheels"
STAMP = ".requirements-hash"
# The IOC image runs ioc/run_ioc.py (softioc) and ioc/table_server.py (p4p).
IOC_PACKAGES = ("softioc", "p4p")
# The image installs the forwarder from source offline (--no-build-isolation): the venv needs a
# setuptools with its own bdist_wheel (>= 70.1), newer than the one a bookworm venv starts with.
BUILD_BACKEND = "setuptools==84.2.1"


def forwarder_requirements() -> list[str]:
    """The forwarder's pinned runtime dependencies, from pyproject.toml."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [*deps, BUILD_BACKEND]


def ioc_requirements() -> list[str]:
    """The IOC's pins, from pyproject.toml (p4p) and requirements-dev.txt (softioc)."""
    lines = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lines += (REPO / "requirements-dev.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        match = re.match(r"^([A-Za-z0-9_.-]+)==", line.strip())
        if match:
            pins[match.group(1).lower()] = line.strip()
    return [pins[name] for name in IOC_PACKAGES]


SETS = {"forwarder": forwarder_requirements, "ioc": ioc_requirements}


def build(name: str) -> Path:
    requirements = "\n".join(SETS[name]()) + "\n"
    tag = f"{sys.version_info.major}.{sys.version_info.minor}-{platform.machine()}"
    wanted = hashlib.sha256(f"{tag}\n{requirements}".encode()).hexdigest()
    target = WHEELS / name
    if (target / STAMP).is_file() and (target / STAMP).read_text() == wanted:
        print(f"build_wheels: {name}: up to date")
        return target
    if (sys.version_info[:2], platform.machine()) != ((3, 11), "x86_64"):
        print(f"build_wheels: warning: building on Python {tag}; the images run 3.11-x86_64",
              file=sys.stderr)
    staging = Path(tempfile.mkdtemp(prefix=f"fwd-rig-wheels-{name}-"))
    try:
        (staging / "requirements.txt").write_text(requirements)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
             "--wheel-dir", str(staging), "-r", str(staging / "requirements.txt")],
            check=True,
        )
        (staging / STAMP).write_text(wanted)
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"build_wheels: {name}: {len(list(target.glob('*.whl')))} wheels in {target}")
    return target


if __name__ == "__main__":
    if sys.argv[1:2] == ["--print"]:
        print("\n".join(SETS[sys.argv[2]]()))
    else:
        for set_name in sys.argv[1:] or list(SETS):
            build(set_name)
