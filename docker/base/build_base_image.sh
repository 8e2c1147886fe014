#!/usr/bin/env bash
# Build the rig's Debian base image without pulling anything from a registry.
#
# Where no registry can be reached, `FROM python:3.11-slim` cannot work, so the base is made
# from Debian's own packages: debootstrap a bookworm minbase with python3, python3-venv and
# ca-certificates into a temp dir, then `docker import` it. Skipped when the image exists
# (pass --force to rebuild). Bookworm ships Python 3.11, so wheels built on a bookworm host fit.
set -euo pipefail

IMAGE="${BASE_IMAGE:-forwarder-rig/debian-base:bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

if [ "$FORCE" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build_base_image: $IMAGE already present; skipped"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "build_base_image: debootstrap needs root (or build $IMAGE elsewhere and docker load it)" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    apt_opts=(-o DPkg::Lock::Timeout=600)
    apt-get "${apt_opts[@]}" update -q
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q debootstrap
fi

rootfs="$(mktemp -d /tmp/fwd-rig-rootfs-XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
start=$SECONDS
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR"

cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
# Keep images small: no package cache, no docs, no recommends in later apt-get installs.
cat >"$rootfs/etc/apt/apt.conf.d/90forwarder-rig" <<'APTCONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APTCONF
# (Keep /usr/share/man: Java's postinst fails without its man1 folder.)
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV DEBIAN_FRONTEND=noninteractive' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'LABEL org.forwarder-rig.image=1' \
    --change 'CMD ["/bin/bash"]' \
    - "$IMAGE"
echo "build_base_image: built $IMAGE in $((SECONDS - start))s"
