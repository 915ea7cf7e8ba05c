"""A lab's gateway namespace is closed before its gateway runs and after it stops; ``down`` still cleans up."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from natlab.lab import down, up

from natlab.realisers.netns import namespaces as netns

from natlab.realisers.netns import procs
from natlab.realisers.netns.state import LabState

from labkit import wait_for

pytestmark = pytest.mark.netns


def _sysctl(ns: str, key: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-n", key],
                          capture_output=True, text=True, check=True).stdout.strip()


def _mangle(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "iptables", "-t", "mangle", "-S"],
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.usefixtures("needs_daemon")
# It reads the NFQUEUE rules and ip_forward themselves; dpdk closes a namespace otherwise
# (ip_forward=0 from the start and a netdev ingress drop: tests/netns/dpdk and fault injection).
@pytest.mark.datapaths("nfqueue", "kernel-cache")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_lab_gateway_that_stops_leaves_its_namespace_closed_until_down(topology, lab_name, sig) -> None:
    lab = up(topology("two-homes"))
    entry = lab.state.gateways["nat-a"]
    ns = entry["netns"]
    assert _sysctl(ns, "net.ipv4.ip_forward") == "1" and "NFQUEUE" in _mangle(ns)
    os.kill(entry["pid"], sig)
    assert wait_for(lambda: procs.start_time(entry["pid"]) is None)
    assert _sysctl(ns, "net.ipv4.ip_forward") == "0"
    listing = _mangle(ns)
    assert "NFQUEUE" not in listing and "-j DROP" in listing
    down(lab_name)
    assert netns.lab_namespaces(lab_name) == [] and not LabState.new(lab_name).path.parent.exists()


def test_a_gateway_namespace_is_created_closed() -> None:
    assert netns.GATEWAY_SYSCTLS["net.ipv4.ip_forward"] == "0"
    assert {k: v for k, v in netns.GATEWAY_SYSCTLS.items() if k != "net.ipv4.ip_forward"} == \
        {k: v for k, v in netns.FORWARDER_SYSCTLS.items() if k != "net.ipv4.ip_forward"}
