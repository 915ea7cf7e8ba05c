#!/usr/bin/env bash
# Install natlab and everything it needs on Debian/Ubuntu. Idempotent.
#   bash install.sh            system packages + .venv + natlab on PATH
#   bash install.sh --demo     ... then run the demo (natlab demo)
#   bash install.sh --test     ... then run the test suite, labs on nfqueue and kernel-cache
#                              (and the DPDK tier, if installed with --dpdk)
#   bash install.sh --test-dpdk ... then only the DPDK tier (needs --dpdk, now or before)
#   bash install.sh --docker   also Docker (docker.io) and mmdebstrap for the docker backend
#   bash install.sh --dpdk     also DPDK (dpdk-dev, libdpdk-dev) and the datapath's cffi module
#   bash install.sh --no-link  leave /usr/local/bin/natlab alone
# Needs root (apt, network namespaces, NFQUEUE): from a user account it re-runs itself
# with sudo. Everything Python goes into ./.venv; /usr/local/bin/natlab links to it.
set -euo pipefail
cd "$(dirname "$0")"

then_run="" docker=0 dpdk=0 link=1
for arg in "$@"; do
  case "$arg" in
    --demo) then_run=demo ;;
    --test) then_run=test ;;
    --test-dpdk) then_run=test-dpdk ;;
    --docker) docker=1 ;;
    --dpdk) dpdk=1 ;;
    --no-link) link=0 ;;
    *) echo "install.sh: unknown option $arg (--demo, --test, --test-dpdk, --docker, --dpdk, --no-link)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then
    echo "install.sh: needs root (apt, network namespaces, NFQUEUE); re-running with sudo" >&2
    exec sudo -- bash "$PWD/$(basename "$0")" "$@"
  fi
  echo "install.sh: run as root (natlab creates network namespaces and NFQUEUE rules); no sudo here" >&2
  exit 1
fi

# Every program natlab or its tests run comes from here (chromium: the explore workbench's
# browser tests; python3-nftables: libnftables for the kernel-cache datapath, nftables: the
# nft tool its tests read the cache with; ethtool: those tests turn checksum offload off).
packages=(python3 python3-venv python3-dev gcc iproute2 iptables libnetfilter-queue-dev
          libnfnetlink-dev tcpdump tshark iperf3 procps iputils-ping traceroute netcat-openbsd
          stun-client stun-server chromium chromium-driver natpmpc miniupnpc nftables python3-nftables
          ethtool)
[ "$docker" = 1 ] && packages+=(docker.io mmdebstrap debian-archive-keyring ca-certificates)
# DPDK datapath: the libraries and PMDs (af_xdp, af_packet), pkg-config for the build, ethtool
# and nftables for the lab set-up (offloads off, the kernel's copy dropped).
[ "$dpdk" = 1 ] && packages+=(dpdk-dev libdpdk-dev pkg-config ethtool nftables)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's own python3 (just installed), not whichever python3 comes first on PATH: a
# pyenv or conda interpreter under /root would leave a .venv that other users cannot run.
py=/usr/bin/python3
if [ -x .venv/bin/python ] && ! grep -qx "home = $(dirname "$py")" .venv/pyvenv.cfg 2>/dev/null; then
  echo "install.sh: .venv was made by $(sed -n 's/^home = //p' .venv/pyvenv.cfg)/python3; making it anew with $py"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
# pip's and setuptools' chatter goes to a log, shown only when the install fails
log=.venv/install.log
extras="test,nfqueue,explore"
[ "$dpdk" = 1 ] && extras+=",dpdk"
if ! { .venv/bin/python -m pip install -q --upgrade pip &&
       .venv/bin/python -m pip install -q -e ".[$extras]"; } >"$log" 2>&1; then
  echo "install.sh: pip install failed; the last lines of $log:" >&2
  tail -n 25 "$log" >&2
  exit 1
fi

if [ "$dpdk" = 1 ]; then
  # The cffi module over DPDK, built now (about 3 s) rather than by the first gateway.
  if ! .venv/bin/python -m natlab.datapaths.dpdk.binding >>"$log" 2>&1; then
    echo "install.sh: building the DPDK binding failed; the last lines of $log:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
fi

target="$PWD/.venv/bin/natlab"
if [ "$link" = 1 ]; then
  current="$(readlink /usr/local/bin/natlab 2>/dev/null || true)"
  if [ -e /usr/local/bin/natlab ] && [ ! -L /usr/local/bin/natlab ]; then
    echo "install.sh: /usr/local/bin/natlab is not a link natlab made; left alone (run $target)" >&2
  elif [ -n "$current" ] && [ "$current" != "$target" ]; then
    echo "install.sh: /usr/local/bin/natlab pointed to $current (another checkout); now -> $target" >&2
    echo "install.sh: (bash install.sh --no-link leaves it; ln -sf $current /usr/local/bin/natlab undoes it)" >&2
    ln -sf "$target" /usr/local/bin/natlab
  else
    ln -sf "$target" /usr/local/bin/natlab
  fi
fi
echo "install.sh: $(.venv/bin/natlab --version) installed in $PWD/.venv"

case "$then_run" in
  demo) echo "install.sh: natlab demo"; exec .venv/bin/natlab demo ;;
  test|test-dpdk)
    # Every lab test and scenario on nfqueue and kernel-cache; then DPDK (installed with
    # --dpdk) runs its own tier alone: its gateways poll their ports, which would crowd a
    # 2-core machine running the whole suite's timing tests beside them.
    if [ "$then_run" = test ]; then
      echo "install.sh: .venv/bin/pytest -q --natlab-datapath nfqueue,kernel-cache"
      .venv/bin/pytest -q --natlab-datapath nfqueue,kernel-cache
    fi
    why="$(.venv/bin/python -c "from natlab.datapaths.registry import unavailable; print(unavailable('dpdk') or '')" 2>&1 || true)"
    if [ -z "$why" ]; then
      dpdk_tier="tests/netns/dpdk tests/netns/portmap tests/netns/gateway tests/docker/test_docker_dpdk.py tests/unit scenarios tests/netns/lab/test_matrix_netns.py tests/netns/e2e"
      # one worker and two: tests about dpdk set their own workers and skip the second
      echo "install.sh: .venv/bin/pytest -q $dpdk_tier -k dpdk --natlab-datapath dpdk,dpdk:workers=2"
      exec .venv/bin/pytest -q $dpdk_tier -k dpdk --natlab-datapath dpdk,dpdk:workers=2
    elif [ "$then_run" = test-dpdk ]; then
      echo "install.sh: the DPDK tier cannot run: $why (bash install.sh --dpdk)" >&2; exit 1
    fi ;;
esac
