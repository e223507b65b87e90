#!/usr/bin/env bash
# Builds the stand-in images (README.md here) from Debian's archive: a minimal bookworm
# and trixie made by debootstrap and imported, then one image per official image the
# compose stack names. Images already built from these same files are kept. Needs root,
# debootstrap and a running Docker engine.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

has_image() { docker image inspect "$1" >/dev/null 2>&1; }
# What the stand-ins are built from: an image made from other files is built again.
files_hash=$(cat "$here"/* /etc/ssl/certs/ca-certificates.crt | sha256sum | cut -c1-16)
built_from() { docker image inspect --format '{{index .Config.Labels "perch.standin.files"}}' "$1" 2>/dev/null; }

for suite in bookworm trixie; do
  has_image "perch-standin/debian:$suite" && continue
  rootfs=$(mktemp -d)
  echo "debootstrap $suite ..."
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/dev/null
  tar -C "$rootfs" -c . | docker import - "perch-standin/debian:$suite" >/dev/null
  rm -rf "$rootfs"
done

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$here"/* "$context"/
cp /etc/ssl/certs/ca-certificates.crt "$context/host-ca-certificates.crt"
for name in python postgres redis nginx compose; do
  [ "$(built_from "perch-standin/$name")" = "$files_hash" ] && continue
  echo "building perch-standin/$name ..."
  docker build --quiet --label "perch.standin.files=$files_hash" -t "perch-standin/$name" \
    -f "$context/$name.Dockerfile" "$context" >/dev/null
done
