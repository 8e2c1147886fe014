"""Remove what the docker backend left behind, and nothing else.

Only containers, volumes and networks carrying the label ``org.forwarder-rig.suite=1`` are
touched (images only with ``--images``, and only those labelled ``org.forwarder-rig.image``).
A labelled container whose owner (the test process, label ``org.forwarder-rig.owner``) is
still alive belongs to a run going on and is kept, unless ``--all``; ``--run ID`` limits the
clean to one run. Never a `docker rm $(docker ps -aq)`.

    python -m helpers.rig.docker.clean [--images] [--all] [--run RUN_ID] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from helpers.rig.docker.compose import OWNER_LABEL, RUN_LABEL, SUITE_LABEL
from helpers.rig.processes import _start_ticks

IMAGE_LABEL = "org.forwarder-rig.image"


def _docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise RuntimeError(f"`docker {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def owner_alive(owner: str) -> bool:
    """Whether the process named by an owner label (``pid-starttime``) still runs."""
    pid, _, ticks = owner.partition("-")
    if not pid.isdigit() or not ticks or ticks == "None":
        return False
    return _start_ticks(int(pid)) == ticks


def _labelled(kind: str, run: str | None) -> list[tuple[str, dict[str, str]]]:
    """(id, labels) of every ``kind`` (container, volume, network) with the suite label."""
    filters = ["--filter", f"label={SUITE_LABEL}=1"]
    if run:
        filters += ["--filter", f"label={RUN_LABEL}={run}"]
    if kind == "container":
        ids = _docker("ps", "-a", "-q", "--no-trunc", *filters).split()
    elif kind == "volume":
        ids = _docker("volume", "ls", "-q", *filters).split()
    else:
        ids = _docker("network", "ls", "-q", "--no-trunc", *filters).split()
    found = []
    for ident in ids:
        raw = _docker(kind, "inspect", "--format", "{{json .}}", ident, check=False)
        labels = _labels_of(kind, raw)
        # Re-check: never act on a filter's word alone.
        if labels.get(SUITE_LABEL) == "1":
            found.append((ident, labels))
    return found


def _labels_of(kind: str, raw: str) -> dict[str, str]:
    if not raw.strip():
        return {}
    data = json.loads(raw)
    labels = data.get("Config", {}).get("Labels") if kind == "container" else data.get("Labels")
    return labels or {}


def clean(*, images: bool = False, everything: bool = False, run: str | None = None,
          dry_run: bool = False, log=print) -> int:
    """Remove the suite's leftovers; returns how many resources were (or would be) removed."""
    removed = 0
    kept_runs: set[str] = set()
    for kind, remove in (
        ("container", ["rm", "-f", "-v"]),
        ("volume", ["volume", "rm", "-f"]),
        ("network", ["network", "rm"]),
    ):
        for ident, labels in _labelled(kind, run):
            run_id = labels.get(RUN_LABEL, "?")
            if not everything and owner_alive(labels.get(OWNER_LABEL, "")):
                kept_runs.add(run_id)
                continue
            log(f"docker clean: removing {kind} {ident[:12]} (run {run_id})")
            if not dry_run:
                _docker(*remove, ident, check=False)
            removed += 1
    if images:
        ids = _docker("images", "-q", "--no-trunc", "--filter", f"label={IMAGE_LABEL}=1").split()
        for ident in dict.fromkeys(ids):
            log(f"docker clean: removing image {ident[7:19]}")
            if not dry_run:
                _docker("rmi", "-f", ident, check=False)
            removed += 1
    for run_id in sorted(kept_runs):
        log(f"docker clean: kept run {run_id}: its test process is still running (--all removes it)")
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.rig.docker.clean", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", action="store_true", help="also remove the rig's images")
    parser.add_argument("--all", action="store_true",
                        help="also remove containers of runs whose test process still runs")
    parser.add_argument("--run", default=None, help="only this run id")
    parser.add_argument("--dry-run", action="store_true", help="only say what would go")
    args = parser.parse_args(argv)
    from helpers.rig.docker.engine import engine_answers

    ok, why = engine_answers()
    if not ok:
        print(f"docker clean: nothing to do: {why}")
        return 0
    count = clean(images=args.images, everything=args.all, run=args.run, dry_run=args.dry_run)
    print(f"docker clean: {count} removed" + (" (dry run)" if args.dry_run else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
