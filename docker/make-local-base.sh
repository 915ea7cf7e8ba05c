#!/usr/bin/env bash
# Build a local Debian base image for the natlab Dockerfile, without any registry.
#   bash docker/make-local-base.sh [TAG]         (default TAG: natlab-base:local)
# mmdebstrap (or debootstrap) builds a minimal Debian 12 tree from the Debian mirror
# apt already uses; `docker import` turns it into an image (~40 s). Then:
#   bash docker/build-image.sh --base natlab-base:local
# The host's extra CA certificates (/usr/local/share/ca-certificates) and apt proxy
# settings are carried into the tree so apt and pip inside builds work where the
# host's do. Idempotent: an existing TAG is kept unless NATLAB_REBUILD_BASE=1.
set -euo pipefail
tag="${1:-natlab-base:local}"
suite="${NATLAB_BASE_SUITE:-bookworm}"
mirror="${NATLAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${NATLAB_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"

if [ "${NATLAB_REBUILD_BASE:-0}" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "make-local-base: $tag exists (NATLAB_REBUILD_BASE=1 rebuilds it)"
  exit 0
fi

packages=ca-certificates,python3,python3-venv,python3-pip,iproute2,iptables,libnetfilter-queue1,iputils-ping,procps,netcat-openbsd
# python3-nftables: libnftables (and its libraries) for the kernel-cache datapath's gateways
packages+=,python3-nftables
sources=("deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main")
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# apt proxy settings of the host, if any, go into the tree as well
apt-config dump 2>/dev/null | grep -i '^Acquire::https\?::Proxy ' > "$tmp/90proxy" || true

if command -v mmdebstrap >/dev/null; then
  hooks=(--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin')
  if [ -s "$tmp/90proxy" ]; then
    hooks+=(--customize-hook="copy-in $tmp/90proxy /etc/apt/apt.conf.d")
  fi
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    hooks+=(--customize-hook='mkdir -p "$1"/usr/local/share/ca-certificates'
            --customize-hook="copy-in $(echo /usr/local/share/ca-certificates/*.crt) /usr/local/share/ca-certificates"
            --customize-hook='chroot "$1" update-ca-certificates >/dev/null')
  fi
  echo "make-local-base: mmdebstrap $suite -> $tag"
  mmdebstrap --quiet --variant=minbase --include="$packages" "${hooks[@]}" \
    "$suite" - "${sources[@]}" </dev/null |
    docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
elif command -v debootstrap >/dev/null; then
  echo "make-local-base: debootstrap $suite -> $tag"
  root="$tmp/root"
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >/dev/null
  printf '%s\n' "${sources[@]}" > "$root/etc/apt/sources.list"
  [ -s "$tmp/90proxy" ] && cp "$tmp/90proxy" "$root/etc/apt/apt.conf.d/"
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
  fi
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
  tar -C "$root" -c . |
    docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
else
  echo "make-local-base: needs mmdebstrap or debootstrap (apt-get install mmdebstrap)" >&2
  exit 1
fi
echo "make-local-base: $tag built"
