"""Static 1:1 NAT and port forwards in a real lab: unsolicited inbound reaches the inside host."""

from __future__ import annotations

import os
import sys

import pytest

from natlab.lab import up
from natlab.topology import from_data

pytestmark = pytest.mark.netns

SERVE_UDP = "import socket,sys; s=socket.socket(2,2); s.bind(('0.0.0.0',int(sys.argv[1]))); s.settimeout(5); " \
            "d,a=s.recvfrom(99); s.sendto(b'seen '+a[0].encode(), a)"


@pytest.fixture(scope="module")
def lab():
    topo = from_data({
        "name": f"e2e-static-{os.getpid()}",
        "networks": {"internet": {"subnet": "203.0.113.0/24"}, "lan": {"subnet": "192.168.9.0/24"}},
        "gateways": {"gw": {
            "behaviour": "port-restricted-cone", "inside": "lan", "outside": "internet",
            "overrides": {
                "static": [{"internal": "192.168.9.2", "external": "203.0.113.50"}],
                "forwards": [{"protocol": "udp", "external_port": 5353,
                              "internal_address": "192.168.9.3", "internal_port": 53}],
            },
        }},
        "hosts": {"one-to-one": {"network": "lan", "address": "192.168.9.2"},
                  "forwarded": {"network": "lan", "address": "192.168.9.3"},
                  "client": {"network": "internet", "address": "203.0.113.100"}},
    })
    with up(topo) as lab:
        yield lab


def _ask(lab, target: str, port: int) -> str:
    code = ("import socket; s=socket.socket(2,2); s.settimeout(3); "
            f"s.sendto(b'hi', ('{target}', {port})); print(s.recvfrom(99)[0].decode())")
    done = lab.exec("client", [sys.executable, "-c", code], capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


def test_static_one_to_one_admits_unsolicited_inbound_and_keeps_ports(lab):
    server = lab.popen("one-to-one", [sys.executable, "-c", SERVE_UDP, "7000"])
    try:
        assert _ask(lab, "203.0.113.50", 7000) == "seen 203.0.113.100"
    finally:
        server.wait(timeout=10)
    ping = lab.exec("client", ["ping", "-c1", "-W2", "203.0.113.50"], capture_output=True)
    assert ping.returncode == 0


def test_port_forward_reaches_the_forwarded_host_from_anyone(lab):
    server = lab.popen("forwarded", [sys.executable, "-c", SERVE_UDP, "53"])
    try:
        gw_address = str(lab.host_address("gw"))
        assert _ask(lab, gw_address, 5353) == "seen 203.0.113.100"
    finally:
        server.wait(timeout=10)
