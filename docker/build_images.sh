#!/usr/bin/env bash
# Build every image of the docker backend, in order, pulling nothing from any registry:
#   1. the Debian base (debootstrap + docker import; once, then reused),
#   2. the wheels of the forwarder and the IOC, on the host (rebuilt only when pins change),
#   3. forwarder-rig/kafka (Kafka's Maven jars from the host cache + Debian's Java 17),
#   4. forwarder-rig/ioc, 5. forwarder-rig/forwarder:<git rev>[-dirty] (also :latest;
#      FORWARDER_IMAGE overrides the first tag).
# Layers are ordered so a second run rebuilds only what changed. Each step prints its time.
#
# Usage: docker/build_images.sh [kafka|ioc|forwarder ...]   (default: all)
# Env: PYTHON (a Python 3.11 with pip; default python3), BASE_IMAGE (to use another base,
#      e.g. python:3.11-slim where a registry is reachable).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
BASE_IMAGE="${BASE_IMAGE:-forwarder-rig/debian-base:bookworm}"
KAFKA_IMAGE="${KAFKA_IMAGE:-forwarder-rig/kafka:4.1.1}"
IOC_IMAGE="${IOC_IMAGE:-forwarder-rig/ioc:latest}"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(kafka ioc forwarder)

timed() {  # timed LABEL CMD...: run CMD, then say how long it took
    local label="$1" start=$SECONDS
    shift
    "$@"
    echo "build_images: $label took $((SECONDS - start))s"
}

# Two test sessions starting at once build one after the other, not over each other's wheels.
exec 9>"${TMPDIR:-/tmp}/forwarder-rig-build-images.lock"
flock 9

if ! timeout 5 docker info >/dev/null 2>&1; then
    echo "build_images: no Docker engine answers (as root: docker/ensure_engine.sh)" >&2
    exit 1
fi
# Without the buildx plugin the CLI falls back to the classic builder; say so up front
# instead of printing a deprecation notice on every build.
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi
build() {  # build TAG DOCKERFILE CONTEXT [docker build args...]
    local tag="$1" file="$2" context="$3"
    shift 3
    docker build --quiet --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag" -f "$file" "$@" "$context"
}

if [ "$BASE_IMAGE" = forwarder-rig/debian-base:bookworm ]; then
    timed "base image" bash "$REPO/docker/base/build_base_image.sh"
fi

for target in "${targets[@]}"; do
    case "$target" in
    kafka)
        jars="$(cd "$REPO" && "$PYTHON" -m helpers.rig.kafka_jars)"
        mkdir -p "$REPO/docker/kafka/jars"
        # Mirror the cache: -p keeps the files as they are, so the COPY layer stays cached.
        find "$REPO/docker/kafka/jars" -name '*.jar' -delete
        cp -p "$jars"/*.jar "$REPO/docker/kafka/jars/"
        cp -p "$REPO/helpers/rig/kafka/log4j2.properties" "$REPO/docker/kafka/"
        timed "$KAFKA_IMAGE" build "$KAFKA_IMAGE" "$REPO/docker/kafka/Dockerfile" "$REPO/docker/kafka"
        ;;
    ioc)
        timed "ioc wheels" "$PYTHON" "$REPO/docker/build_wheels.py" ioc
        timed "$IOC_IMAGE" build "$IOC_IMAGE" "$REPO/docker/ioc/Dockerfile" "$REPO"
        ;;
    forwarder)
        timed "forwarder wheels" "$PYTHON" "$REPO/docker/build_wheels.py" forwarder
        if [ -z "${FORWARDER_IMAGE:-}" ]; then
            rev="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo nogit)"
            if [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null)" ]; then rev="$rev-dirty"; fi
            FORWARDER_IMAGE="forwarder-rig/forwarder:$rev"
        fi
        timed "$FORWARDER_IMAGE" build "$FORWARDER_IMAGE" \
            "$REPO/Dockerfile" "$REPO" -t forwarder-rig/forwarder:latest
        ;;
    *)
        echo "build_images: unknown image '$target' (kafka, ioc or forwarder)" >&2
        exit 2
        ;;
    esac
done
