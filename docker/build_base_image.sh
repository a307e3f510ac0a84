#!/usr/bin/env bash
# Builds the base image the Dockerfiles name (`python:3.11-slim`) locally, for machines where no
# registry can be reached: a debootstrap'd Debian bookworm with python3 + venv, the host's locally
# added CA certificates (pip inside the image goes through the same TLS-intercepting egress as the
# host), imported into podman and tagged `python:3.11-slim` so `FROM python:3.11-slim` resolves
# without a pull. Where Docker Hub is reachable, skip this script: the real image works unchanged.
#
# Cached: the image is keyed by a hash of its recipe (the lines between the recipe markers below)
# and of the host's added CA certificates
# (tag localhost/infersuite-base:<key>); a key already in podman's storage, or saved as
# $INFERSUITE_IMAGE_CACHE/base-<key>.tar, is reused and only re-tagged.
#
# Usage: docker/build_base_image.sh            (needs root, podman, debootstrap)
set -euo pipefail

BASE_TAG="python:3.11-slim"
# recipe:begin
SUITE="bookworm"
PACKAGES="python3,python3-venv,ca-certificates"
CACHE_DIR="${INFERSUITE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/infersuite}"
LOCAL_CAS=/usr/local/share/ca-certificates

command -v podman >/dev/null || { echo "build_base_image: podman is not installed" >&2; exit 2; }

key="$( { sed -n '/^# recipe:begin/,/^# recipe:end/p' "$0"; find "$LOCAL_CAS" -type f -name '*.crt' 2>/dev/null | sort | xargs -r cat; } \
        | sha256sum | cut -c1-16)"
keyed="localhost/infersuite-base:$key"

if podman image exists "$keyed"; then
  echo "base image $keyed is cached"
elif [ -f "$CACHE_DIR/base-$key.tar" ]; then
  echo "loading base image from $CACHE_DIR/base-$key.tar"
  podman load -q -i "$CACHE_DIR/base-$key.tar" >/dev/null
else
  command -v debootstrap >/dev/null || { echo "build_base_image: debootstrap is not installed" >&2; exit 2; }
  [ "$(id -u)" -eq 0 ] || { echo "build_base_image: debootstrap needs root" >&2; exit 2; }
  # The mirror apt already uses on this host (deb822 sources first, then sources.list).
  mirror="$(grep -hs -m1 '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true)"
  [ -n "$mirror" ] || mirror="$(grep -hs -m1 '^deb ' /etc/apt/sources.list | awk '{print $2}' || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  rootfs="$(mktemp -d /var/tmp/infersuite-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' EXIT
  echo "debootstrap $SUITE from $mirror into $rootfs (about a minute)"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  if compgen -G "$LOCAL_CAS/*.crt" >/dev/null; then
    cp "$LOCAL_CAS"/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  # The official image has `python` on PATH; the venvs built from this one do not depend on it.
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  tar -C "$rootfs" --numeric-owner -c . | podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$keyed" >/dev/null
# recipe:end
  mkdir -p "$CACHE_DIR"
  podman save -q -o "$CACHE_DIR/base-$key.tar" "$keyed"
  echo "built $keyed (saved to $CACHE_DIR/base-$key.tar)"
fi
podman tag "$keyed" "$BASE_TAG"
echo "tagged $keyed as $BASE_TAG"
