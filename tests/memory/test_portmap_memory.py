"""The port mapping server of the in-memory twin: the same shell and service as netns, no root."""

from __future__ import annotations

import pytest

from natlab.portmap import natpmp, pcp, upnp_soap
from natlab.portmap.client import PortMapRequest, http_request, parse_http_response
from natlab.portmap.service import ANNOUNCE_DELAYS
from natlab.realisers.base import Probe
from natlab.realisers.memory.driver import MemoryDriver

TOPOLOGY = {
    "name": "pm-memory",
    "networks": {"internet": {"subnet": "203.0.113.0/24"}, "home": {"subnet": "192.168.1.0/24"}},
    "gateways": {"nat": {"behaviour": "home-router-internal-hairpin", "inside": "home", "outside": "internet",
                         "pool": ["203.0.113.1"], "overrides": {"port_mapping": {"pcp": True}}}},
    "hosts": {"alice": {"network": "home", "address": "192.168.1.10"},
              "bob": {"network": "home", "address": "192.168.1.20"},
              "server": {"network": "internet", "address": "203.0.113.100"}},
}
GW = "192.168.1.1"


@pytest.fixture
def lab() -> MemoryDriver:
    return MemoryDriver(TOPOLOGY)


def reaches(lab: MemoryDriver, proto: str, port: int, listen: int) -> bool:
    return lab.probe(Probe(proto, "server", "203.0.113.1", port, receiver="alice", listen_port=listen)).delivered


@pytest.mark.parametrize("protocol, kind", [("natpmp", "natpmp"), ("pcp", "pcp"), ("upnp", "upnp")])
def test_each_protocol_maps_a_port_the_outside_reaches_and_deletes_it(lab, protocol, kind):
    answer = lab.map_port("alice", PortMapRequest(protocol, 5000, external_port=5000, lifetime=600))
    assert answer.ok and answer.external == "203.0.113.1:5000", answer
    assert [(r["kind"], r["internal"]) for r in lab.mappings("nat")] == [(kind, "192.168.1.10:5000")]
    assert reaches(lab, "udp", 5000, 5000)
    gone = lab.map_port("alice", PortMapRequest(protocol, 5000, external_port=5000, delete=True,
                                                nonce=answer.nonce))
    assert gone.ok and lab.mappings("nat") == []
    assert not reaches(lab, "udp", 5000, 5000)


def test_the_gateway_ring_tells_creation_refusal_and_expiry(lab):
    lab.map_port("alice", PortMapRequest("upnp", 22, external_port=2222, transport="tcp", lifetime=600))
    refused = lab.map_port("bob", PortMapRequest("upnp", 22, external_port=2222, transport="tcp"))
    assert refused.result == "UPNP_718"
    lab.advance("nat", 601)
    kinds = [e["kind"] for e in lab.events("nat", 50)]
    assert kinds.index("port-mapping-created") < kinds.index("portmap-refused") < kinds.index("port-mapping-expired")
    assert lab.mappings("nat") == []
    listing = _soap(lab, "GetGenericPortMappingEntry", [("NewPortMappingIndex", "0")])
    assert listing.error_code == 713  # the service's table expired it too


def test_a_reboot_flushes_and_announces_a_new_epoch_to_every_inside_host(lab):
    lab.advance("nat", 100)
    lab.map_port("alice", PortMapRequest("natpmp", 5000, lifetime=600))
    for host in ("alice", "bob"):
        lab.net.stack(host).inbox.clear()
    lab.reboot("nat")
    assert lab.mappings("nat") == []
    heard = _announcements(lab, "bob")
    assert [type(a).__name__ for a in heard] == ["ExternalAddressResponse", "PcpResponse"]
    assert all(a.epoch == 0 for a in heard)
    lab.advance("nat", ANNOUNCE_DELAYS[-1])  # the rest of the ten, doubling from 250 ms
    assert len(_announcements(lab, "alice")) == 2 * len(ANNOUNCE_DELAYS)


def test_a_new_external_address_flushes_the_table_and_is_announced(lab):
    lab.map_port("alice", PortMapRequest("pcp", 5000, lifetime=600))
    lab.net.stack("alice").inbox.clear()
    lab.set_pool("nat", ["203.0.113.9"])
    assert lab.mappings("nat") == []
    addresses = [str(a.external_address) for a in _announcements(lab, "alice")
                 if isinstance(a, natpmp.ExternalAddressResponse)]
    assert addresses == ["203.0.113.9"]
    again = lab.map_port("alice", PortMapRequest("natpmp", 5000, lifetime=600))
    assert again.external_address == "203.0.113.9"


def test_turning_a_protocol_off_live_removes_its_mappings_and_closes_its_port(lab):
    lab.map_port("alice", PortMapRequest("natpmp", 5000, lifetime=600))
    lab.map_port("alice", PortMapRequest("upnp", 6000, lifetime=600))
    lab.set("nat", ["port_mapping.natpmp=false", "port_mapping.pcp=false"])
    assert [r["kind"] for r in lab.mappings("nat")] == ["upnp"]
    silent = lab.map_port("alice", PortMapRequest("natpmp", 5000, lifetime=600))
    assert silent.result == "TIMEOUT"
    assert lab.map_port("alice", PortMapRequest("upnp", 6001, lifetime=600)).ok


def test_pcp_filters_admit_only_the_peer_named(lab):
    from natlab.engine.port_mapping_policy import RemotePeer  # noqa: F401  (the engine's filter value)

    nonce = bytes(12)
    request = pcp.PcpRequest(pcp.PcpOpcode.MAP, 600, pcp.as_address("192.168.1.10"),
                             pcp.MapData(nonce, 17, 7000, 7000),
                             (pcp.Filter(prefix_length=128, remote_port=3478,
                                         remote_address=pcp.as_address("203.0.113.100")),))
    sport = 5350  # what PCP clients commonly send from; the answer comes back to it
    lab.net.stack("alice").bind_udp(sport)
    lab.net.stack("alice").inbox.clear()  # the announcements the server sent when it started
    lab.net.send_udp("alice", sport, GW, 5351, request.emit())
    answer = pcp.parse_response(lab.net.recv("alice", sport)[0].payload)
    assert answer.result is pcp.PcpResult.SUCCESS
    assert lab.mappings("nat")[0]["remote"] == "203.0.113.100:3478"
    ok = lab.probe(Probe("udp", "server", "203.0.113.1", 7000, sport=3478, receiver="alice", listen_port=7000))
    other = lab.probe(Probe("udp", "server", "203.0.113.1", 7000, sport=3479, receiver="alice", listen_port=7000))
    assert ok.delivered and not other.delivered and other.detail == "filtered"


def test_hostile_http_and_ssdp_are_refused_and_counted(lab):
    huge = b"POST /ctl/IPConn HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"
    status, _ = parse_http_response(_http(lab, huge))
    assert status == 413
    status, _ = parse_http_response(_http(lab, b"SUBSCRIBE /evt/IPConn HTTP/1.1\r\nNT: upnp:event\r\n\r\n"))
    assert status == 501
    search = b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nST: ssdp:all\r\n\r\n'
    lab.net.stack("alice").bind_udp(40000)
    for _ in range(25):
        lab.net.send_udp("alice", 40000, "239.255.255.250", 1900, search)
    answers = lab.net.recv("alice", 40000)
    assert len(answers) == 20 * 9  # 20 searches answered (9 targets each), 5 dropped
    counters = lab.counters("nat")["gateway"]["portmap"]
    assert counters["ssdp.dropped.rate-limited"] == 5
    assert counters["upnp.http.refused.body-too-large"] == 1
    lab.net.send_udp("alice", 40000, GW, 5351, b"\x00")
    assert lab.counters("nat")["gateway"]["portmap"]["udp5351.dropped.too-short"] == 1


def test_wan_totals_come_from_the_traffic_the_nat_forwarded(lab):
    lab.probe(Probe("udp", "alice", "203.0.113.100", 3478, receiver="server", reply=True))
    sent = _soap(lab, "GetTotalPacketsSent", [], "WANCommonInterfaceConfig:1", "/ctl/CmnIfCfg")
    received = _soap(lab, "GetTotalBytesReceived", [], "WANCommonInterfaceConfig:1", "/ctl/CmnIfCfg")
    assert int(sent.get("NewTotalPacketsSent")) >= 1 and int(received.get("NewTotalBytesReceived")) > 28


def test_an_implicit_mapping_becomes_explicit_with_the_same_port(lab):
    first = lab.probe(Probe("udp", "alice", "203.0.113.100", 3478, sport=41000, receiver="server"))
    port = first.seen_port
    answer = lab.map_port("alice", PortMapRequest("pcp", 41000, lifetime=600))
    assert answer.external_port == port
    assert [r["kind"] for r in lab.mappings("nat")] == ["pcp"]
    counters = lab.counters("nat")["gateway"]["portmap"]["engine"]
    assert counters["conflicts.adopted-dynamic"] == 1


# -- helpers ---------------------------------------------------------------------------

def _http(lab: MemoryDriver, raw: bytes) -> bytes:
    from natlab.realisers.memory.driver import MemNetTransport

    return MemNetTransport(lab.net, "alice", lambda proto: 45000).http(GW, 5000, raw, 1.0)


def _soap(lab, action, args, service="WANIPConnection:2", path="/ctl/IPConn"):
    call = upnp_soap.SoapCall(f"urn:schemas-upnp-org:service:{service}", action, tuple(args))
    raw = _http(lab, http_request("POST", f"{GW}:5000", path, call.emit(), call.soap_action))
    return upnp_soap.parse_answer(parse_http_response(raw)[1])


def _announcements(lab: MemoryDriver, host: str) -> list:
    out = []
    for datagram in lab.net.recv(host, 5350):
        parsed = natpmp.parse_response(datagram.payload) if datagram.payload[0] == 0 \
            else pcp.parse_response(datagram.payload)
        out.append(parsed)
    return out


@pytest.mark.parametrize("protocol", ["natpmp", "pcp", "upnp"])
def test_with_a_mapped_port_hole_punching_works_even_between_symmetric_nats(protocol):
    from natlab.matrix.memory import EXPECTED_CLASSIC, EXPECTED_MAPPED, run_matrix

    without = run_matrix(("symmetric", "port-restricted-cone"), seed=3)
    assert without == {k: EXPECTED_CLASSIC[k] for k in without} and not without[("symmetric", "symmetric")]
    mapped = run_matrix(("symmetric", "port-restricted-cone"), seed=3, port_mapping=protocol)
    assert mapped == {k: EXPECTED_MAPPED[k] for k in mapped} and all(mapped.values())
