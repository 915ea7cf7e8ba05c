"""Static 1:1 NAT and port forwards in a real lab: unsolicited inbound reaches the inside host."""

from __future__ import annotations

import os

import pytest

from labkit import ask, start_reflector, stop_reflector
from natlab.lab import up
from natlab.topology import from_data

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab(natlab_datapath):
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


def _seen_by(lab, host: str, port: int, target: str) -> str:
    """The client asks ``target`` (listening, before it asks, as ``host``:``port``); the source seen."""
    reflector = start_reflector(lab, host, [f"0.0.0.0:{port}"])
    try:
        (reply,) = ask(lab, "client", 40000, target)
    finally:
        stop_reflector(reflector)
    return reply["seen"]


def test_static_one_to_one_admits_unsolicited_inbound_and_keeps_ports(lab):
    assert _seen_by(lab, "one-to-one", 7000, "203.0.113.50:7000") == "203.0.113.100:40000"
    ping = lab.exec("client", ["ping", "-c1", "-W2", "203.0.113.50"], capture_output=True)
    assert ping.returncode == 0


def test_port_forward_reaches_the_forwarded_host_from_anyone(lab):
    gw_address = str(lab.host_address("gw"))
    assert _seen_by(lab, "forwarded", 53, f"{gw_address}:5353") == "203.0.113.100:40000"
