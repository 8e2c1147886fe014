#!/usr/bin/env bash
# Make sure a Docker engine answers, so the docker backend of the rig can run.
#
# Does nothing when `docker info` already answers (a user's Docker Desktop, a CI runner's
# engine). Otherwise, and only as root on a Debian-like host, installs Debian's docker.io
# and starts dockerd in the background, then waits (bounded) until it answers.
# Idempotent: running it twice is harmless.
set -euo pipefail

WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-60}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"

engine_answers() {
    command -v docker >/dev/null 2>&1 && timeout 5 docker info >/dev/null 2>&1
}

if engine_answers; then
    echo "ensure_engine: a Docker engine already answers; nothing to do"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "ensure_engine: no Docker engine answers and this is not root;" \
         "start Docker yourself (or add your user to the docker group)" >&2
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure_engine: no dockerd and no apt-get; install Docker by hand" >&2
        exit 1
    fi
    echo "ensure_engine: installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-o DPkg::Lock::Timeout=600)
    # An old or empty package list finds nothing: refresh it first.
    apt-get "${apt_opts[@]}" update -q
    apt-get "${apt_opts[@]}" install -y -q --no-install-recommends docker.io iptables
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    echo "ensure_engine: starting dockerd (log: $DOCKERD_LOG)"
    # setsid: dockerd must outlive this shell and the test run that called it.
    setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 < /dev/null &
fi

deadline=$((SECONDS + WAIT_SECONDS))
until engine_answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "ensure_engine: dockerd did not answer within ${WAIT_SECONDS}s; last log lines:" >&2
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "ensure_engine: Docker engine answers"
