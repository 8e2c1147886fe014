"""`nox -s clean`: remove what earlier runs of the suite left behind, and nothing else.

* processes recorded in .rig/processes (only while their pid still belongs to them);
* temp dirs recorded in .rig/tempdirs;
* docker containers, networks and volumes carrying the suite's label (images with
  --images), when an engine answers;
* old logs, with --logs.
"""

from __future__ import annotations

import argparse
import shutil

from helpers.rig.paths import LOG_DIR
from helpers.rig.ports import remove_stale_reservations
from helpers.rig.processes import clean_leftovers


def remove_logs(log=print) -> None:
    for entry in LOG_DIR.iterdir() if LOG_DIR.exists() else []:
        if entry.name == ".gitkeep":
            continue
        log(f"clean: removing {entry}")
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def clean_docker(images: bool, log=print) -> None:
    try:
        from helpers.rig.docker.engine import engine_answers
    except ImportError as exc:
        log(f"clean: the docker backend is not installed ({exc})")
        return
    ok, why = engine_answers()
    if not ok:
        log(f"clean: no docker resources to look at ({why})")
        return
    from helpers.rig.docker.clean import clean

    clean(images=images, log=log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s clean --", description=__doc__)
    parser.add_argument("--logs", action="store_true", help="also remove old logs in logs/")
    parser.add_argument("--images", action="store_true", help="also remove the suite's images")
    args = parser.parse_args(argv)
    removed = clean_leftovers()
    print(f"clean: {removed} leftover process(es)/temp dir(s) of earlier runs removed")
    stale = remove_stale_reservations()
    print(f"clean: {stale} port reservation file(s) no live process holds removed")
    clean_docker(args.images)
    if args.logs:
        remove_logs()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
