#!/usr/bin/env bash
# Install natlab and everything it needs on Debian/Ubuntu, as root. Idempotent.
#   bash install.sh            system packages + .venv + natlab on PATH
#   bash install.sh --docker   also Docker (docker.io) and mmdebstrap for the docker backend
# Everything goes into ./.venv; /usr/local/bin/natlab is a link to it.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (natlab creates network namespaces and NFQUEUE rules)" >&2
  exit 1
fi

packages=(python3 python3-venv python3-dev gcc iproute2 iptables libnetfilter-queue-dev
          libnfnetlink-dev tcpdump procps iputils-ping traceroute netcat-openbsd stun-client stun-server)
case "${1:-}" in
  --docker) packages+=(docker.io mmdebstrap debian-archive-keyring ca-certificates) ;;
  "") ;;
  *) echo "install.sh: unknown option $1 (--docker)" >&2; exit 2 ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,nfqueue]'
ln -sf "$PWD/.venv/bin/natlab" /usr/local/bin/natlab
echo "install.sh: $(.venv/bin/natlab --version) installed; /usr/local/bin/natlab -> $PWD/.venv/bin/natlab"
