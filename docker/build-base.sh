#!/usr/bin/env bash
# Builds a Debian bookworm base image from Debian's archive alone (debootstrap + docker import),
# for machines that cannot pull from a container registry. It stands in for
# debian:bookworm-slim, plus python3 and python3-venv.
# Usage: docker/build-base.sh [IMAGE]   (default proofrace-base:bookworm; kept if it exists)
# Needs root, debootstrap and a running Docker engine.
set -euo pipefail
image="${1:-proofrace-base:bookworm}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base: $image exists"
  exit 0
fi

# The Debian mirrors apt uses on this machine, since they are the ones known to answer here.
# Reads both the one-line format and deb822 (.sources) files.
mirror_for() { # $1: a pattern for one suite; fails when apt's sources name no mirror for it
  local found
  found="$(
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk -v pat="$1" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i ~ /^(http|https|file):/ && $(i + 1) ~ pat) { print $i; exit } }'
  )"
  if [[ -z "$found" ]]; then
    found="$(
      cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk -v pat="$1" 'BEGIN { RS = ""; FS = "\n" }
          { uri = ""; ok = 0
            for (i = 1; i <= NF; i++) {
              if ($i ~ /^URIs:/) { split($i, f, " "); uri = f[2] }
              if ($i ~ /^Suites:/) { n = split($i, w, " "); for (j = 2; j <= n; j++) if (w[j] ~ pat) ok = 1 } }
            if (ok && uri != "") { print uri; exit } }'
    )"
  fi
  if [[ -z "$found" ]]; then
    echo "base: apt's sources name no mirror for $1; set them up first" >&2
    return 1
  fi
  echo "$found"
}
mirror="$(mirror_for '^bookworm$')"
security="$(mirror_for '^bookworm-security$')"

rootfs="$(mktemp -d /tmp/proofrace-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "base: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$mirror" \
  >"$rootfs.log" 2>&1 || {
  tail -20 "$rootfs.log" >&2
  exit 1
}
rm -f "$rootfs.log"

# What the stock slim image also does: all three suites, no recommends, no service starts
# from package scripts, and no caches in the image.
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  >"$rootfs/etc/apt/apt.conf.d/90proofrace-norecommends"
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 755 "$rootfs/usr/sbin/policy-rc.d"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
: >"$rootfs/etc/hostname"

tar --numeric-owner -C "$rootfs" -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    - "$image" >/dev/null
echo "base: built $image"
