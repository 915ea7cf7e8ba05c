"""A DPDK gateway that stops passes nothing either way, and ``natlab down`` leaves nothing.

With the kernel out of the path (``ip_forward=0`` and a netdev ingress drop on the
gateway's veths, natlab/datapaths/dpdk/lab_setup.py) only the poll loop forwards:
once it is gone, by SIGTERM (its own teardown) or ``kill -9`` (none), nothing crosses
the gateway in either direction. ``kill -9`` also leaves EAL's runtime directory
behind, which ``natlab down`` removes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import yaml

import natlab.lab
from dpdk_kit import E2E, lab_of, on_dpdk, run
from labkit import wait_for
from natlab.datapaths.dpdk.daemon import runtime_dir
from natlab.realisers.netns import namespaces as netns
from natlab.realisers.netns import procs

pytestmark = [pytest.mark.netns, pytest.mark.datapaths("dpdk")]

SERVER = "203.0.113.100"
POOL = "203.0.113.1"
UDP = ("import socket, sys\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
       "for _ in range(5): s.sendto(b'x', (sys.argv[1], 7000))\n")


@pytest.fixture(params=[signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def stopped(request):
    """The one-NAT lab with its gateway on dpdk, the gateway stopped by the signal."""
    data = yaml.safe_load((E2E / "e2e-one-nat.yaml").read_text())
    for lab in lab_of(on_dpdk(data)):
        done = run(lab, "alice", ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", SERVER], timeout=20)
        assert done.returncode == 0, done.stdout  # it forwarded while it ran
        pid = lab.state.gateways["nat"]["pid"]
        os.kill(pid, request.param)
        assert wait_for(lambda: procs.start_time(pid) is None, timeout=15)
        yield lab, request.param


def _sniff(lab, node: str, bpf: str) -> subprocess.Popen:
    return lab.popen(node, ["tcpdump", "-n", "-l", "-i", "eth0", bpf],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _seen(proc: subprocess.Popen) -> list[str]:
    """What tcpdump printed (one line a packet) until stopped now."""
    proc.terminate()
    out, err = proc.communicate(timeout=10)
    assert "listening on" in err, err
    return [line for line in out.splitlines() if line.strip()]


def test_a_stopped_dpdk_gateway_passes_nothing_either_way_and_down_cleans_up(stopped):
    lab, sig = stopped
    ns = lab.state.gateways["nat"]["netns"]
    forwarding = subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_forward"],
                                capture_output=True, text=True, check=True).stdout.strip()
    assert forwarding == "0"
    outside = _sniff(lab, "s1", "ip and not src host 203.0.113.100 and not src host 203.0.113.101")
    inside = _sniff(lab, "alice", "ip and src net 203.0.113.0/24")
    time.sleep(1.0)  # tcpdump is listening
    run(lab, "alice", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", SERVER], timeout=20)
    run(lab, "alice", ["python3", "-c", UDP, SERVER], timeout=20)
    run(lab, "s1", ["python3", "-c", UDP, POOL], timeout=20)
    run(lab, "s1", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", POOL], timeout=20)
    time.sleep(0.5)
    assert _seen(outside) == [] and _seen(inside) == []

    name = lab.name
    if sig == signal.SIGKILL:  # no teardown ran: EAL's runtime directory is still there
        assert runtime_dir(name, "nat").is_dir()
    natlab.lab.down(name)
    assert not runtime_dir(name, "nat").exists()
    assert netns.lab_namespaces(name) == []
