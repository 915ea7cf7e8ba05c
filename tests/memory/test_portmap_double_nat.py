"""Double NAT in memory: pcp_interworking passes NAT-PMP and UPnP requests to the CGN's PCP server."""

from __future__ import annotations

import pytest

from natlab.portmap import natpmp
from natlab.portmap.client import PortMapRequest
from natlab.realisers.base import Probe
from natlab.realisers.memory.driver import MemoryDriver


def nat444(cgn: dict, home: dict) -> MemoryDriver:
    return MemoryDriver({
        "name": "pm-nat444", "seed": 7,
        "networks": {"internet": {"subnet": "203.0.113.0/24"}, "carrier": {"subnet": "100.64.0.0/24"},
                     "home": {"subnet": "192.168.1.0/24"}},
        "gateways": {
            "cgn": {"behaviour": "cgn", "inside": "carrier", "outside": "internet", "pool": ["203.0.113.10"],
                    "overrides": {"port_mapping": cgn}},
            "home": {"behaviour": "home-router-internal-hairpin", "inside": "home", "outside": "carrier",
                     "overrides": {"port_mapping": {"pcp_interworking": True, **home}}}},
        "hosts": {"alice": {"network": "home", "address": "192.168.1.10"},
                  "server": {"network": "internet", "address": "203.0.113.100"}},
    })


def test_natpmp_and_upnp_answers_carry_the_outer_mapping_the_internet_reaches():
    lab = nat444({"honour_requested_port": True}, {})
    for protocol, port in (("natpmp", 5000), ("upnp", 6000)):
        answer = lab.map_port("alice", PortMapRequest(protocol, port, external_port=port, lifetime=600))
        assert answer.ok and answer.external == f"203.0.113.10:{port}", answer
        probe = Probe("udp", "server", "203.0.113.10", port, receiver="alice", listen_port=port)
        assert lab.probe(probe).delivered
    outer = {r["internal"] for r in lab.mappings("cgn") if r["kind"] == "pcp"}
    home_address = lab.addresses("home")[0]
    assert outer == {f"{home_address}:5000", f"{home_address}:6000"}
    report = lab.counters("home")["gateway"]["portmap"]["interworking"]
    assert report["outer_address"] == "203.0.113.10" and report["outer_mappings"] == 2


def test_without_interworking_the_client_learns_only_the_inner_mapping():
    lab = nat444({}, {"pcp_interworking": False})
    answer = lab.map_port("alice", PortMapRequest("natpmp", 5000, external_port=5000, lifetime=600))
    assert answer.ok and answer.external_address == lab.addresses("home")[0]
    assert [r for r in lab.mappings("cgn") if r["kind"] == "pcp"] == []


def test_a_fixed_upnp_port_the_cgn_will_not_give_is_refused_and_the_inner_mapping_goes():
    lab = nat444({"honour_requested_port": False}, {})
    refused = lab.map_port("alice", PortMapRequest("upnp", 6000, external_port=6000, lifetime=600))
    assert refused.result == "UPNP_718"
    assert [r["kind"] for r in lab.mappings("home")] == ["pcp"]  # only the gateway's own PCP client
    anyport = lab.map_port("alice", PortMapRequest("upnp", 6000, external_port=6000, lifetime=600, any_port=True))
    assert anyport.ok and anyport.external_address == "203.0.113.10" and anyport.external_port != 0


def test_an_upstream_without_pcp_fails_the_request_once_it_times_out():
    lab = nat444({"pcp": False}, {})
    lab.net.stack("alice").bind_udp(40000)
    lab.net.send_udp("alice", 40000, "192.168.1.1", 5351,
                     natpmp.MapRequest(natpmp.Proto.UDP, 5000, 5000, 600).emit())
    assert lab.net.recv("alice", 40000) == []  # waiting for the CGN
    lab.advance("home", 3)
    (answer,) = [natpmp.parse_response(d.payload) for d in lab.net.recv("alice", 40000)]
    assert answer.result is natpmp.NatpmpResult.NETWORK_FAILURE
    assert [r["kind"] for r in lab.mappings("home")] == ["pcp"]
    assert lab.counters("home")["gateway"]["portmap"]["interworking"]["iwf.timeouts"] >= 1


def test_outer_mappings_are_refreshed_while_the_inner_one_lives_and_deleted_with_it():
    lab = nat444({"honour_requested_port": True}, {})
    lab.map_port("alice", PortMapRequest("natpmp", 5000, external_port=5000, lifetime=600))
    lab.sleep(301)  # past half the lifetime on both clocks
    report = lab.counters("home")["gateway"]["portmap"]["interworking"]
    assert report["iwf.refreshed"] == 1
    (row,) = [r for r in lab.mappings("cgn") if r["kind"] == "pcp"]
    assert row["expires_in"] > 500
    lab.map_port("alice", PortMapRequest("natpmp", 5000, delete=True))
    assert [r for r in lab.mappings("cgn") if r["kind"] == "pcp"] == []


@pytest.mark.parametrize("op", [{"op": "flush"}, {"op": "set-pool", "pool": ["100.64.0.77"]}])
def test_a_reboot_or_new_address_restarts_the_gateways_own_pcp_client(op):
    lab = nat444({"honour_requested_port": True}, {})
    lab.net.request("home", op)
    own = [r for r in lab.mappings("home") if r["kind"] == "pcp"]
    assert len(own) == 1 and own[0]["internal"] == own[0]["external"]
    answer = lab.map_port("alice", PortMapRequest("natpmp", 5000, external_port=5000, lifetime=600))
    assert answer.external == "203.0.113.10:5000"
