"""PCP (RFC 6887): codec round trips, parse order, every result code, nonce rules, client."""

from __future__ import annotations

import random
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given, strategies as st

from natlab.engine.types import Endpoint, Proto
from natlab.portmap import natpmp, pcp, pcp_client
from natlab.portmap.pcp import (
    Filter, MapData, PcpDrop, PcpDropReason, PcpError, PcpOpcode, PcpRequest, PcpResponse,
    PcpResult, PeerData, PreferFailure, ThirdParty, UnknownOption,
)
from natlab.portmap.service import PortMappingService
from natlab.portmap.types import MappingKind, MappingRequest, PortChoice, PortMappingPolicy

HOST = Endpoint.of("192.168.1.2", 40000)
CLIENT = IPv4Address("192.168.1.2")
NONCE, OTHER_NONCE = b"\x01" * 12, b"\x02" * 12

v4 = st.integers(0, 2**32 - 1).map(IPv4Address)
v6 = st.integers(0, 2**128 - 1).map(IPv6Address).filter(lambda a: a.ipv4_mapped is None)
addresses = st.one_of(v4, v6)
u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
nonces = st.binary(min_size=12, max_size=12)
map_data = st.builds(MapData, nonces, st.integers(0, 255), u16, u16, addresses)
peer_data = st.builds(PeerData, nonces, st.integers(0, 255), u16, u16, addresses, u16, addresses)
filters = st.builds(Filter, st.integers(96, 128), u16, v4)
unknown = st.builds(UnknownOption, st.integers(128, 255), st.binary(max_size=13))
map_options = st.lists(st.one_of(filters, unknown), max_size=3).map(tuple)


def service(**knobs) -> PortMappingService:
    return PortMappingService(PortMappingPolicy.every_protocol(**knobs), "203.0.113.1", random.Random(5))


def map_request(port=5000, lifetime=3600, *, external=0, nonce=NONCE, protocol=17,
                options=(), client=CLIENT) -> PcpRequest:
    return PcpRequest(PcpOpcode.MAP, lifetime, client,
                      MapData(nonce, protocol, port, external), tuple(options))


def ask(svc, data, now=10.0, sender=HOST) -> PcpResponse:
    outcome = svc.handle_datagram(data, sender, now)
    (reply,) = outcome.replies
    return pcp.parse_response(reply.data)


# -- codec ----------------------------------------------------------------------

@given(u32, addresses, map_data, st.tuples(st.booleans(), st.booleans()), map_options)
def test_map_request_round_trips(lifetime, client, data, flags, options):
    extra = ((ThirdParty(client),) if flags[0] else ()) + ((PreferFailure(),) if flags[1] else ())
    request = PcpRequest(PcpOpcode.MAP, lifetime, client, data, extra + options)
    raw = request.emit()
    assert len(raw) % 4 == 0
    assert pcp.parse_request(raw) == request


@given(u32, addresses, peer_data)
def test_peer_request_round_trips(lifetime, client, data):
    request = PcpRequest(PcpOpcode.PEER, lifetime, client, data)
    assert len(request.emit()) == 24 + 56
    assert pcp.parse_request(request.emit()) == request


@given(st.sampled_from(list(PcpResult)), u32, u32, map_data, map_options)
def test_map_response_round_trips(result, lifetime, epoch, data, options):
    response = PcpResponse(PcpOpcode.MAP, result, lifetime, epoch, data, options)
    assert pcp.parse_response(response.emit()) == response


def test_announce_is_a_bare_header():
    request = PcpRequest(PcpOpcode.ANNOUNCE, 0, CLIENT)
    assert len(request.emit()) == 24 and pcp.parse_request(request.emit()) == request


def test_ipv4_addresses_travel_ipv4_mapped():
    wire = pcp.address_to_wire(IPv4Address("192.0.2.1"))
    assert wire == bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])
    assert pcp.address_from_wire(wire) == IPv4Address("192.0.2.1")
    assert pcp.address_from_wire(bytes(16)) == IPv6Address("::")


# -- parse order (section 8.3) --------------------------------------------------

def _raw(request: PcpRequest) -> bytes:
    return request.emit()


def _option(code: int, data: bytes = b"", length=None) -> bytes:
    size = len(data) if length is None else length
    return struct.pack("!BBH", code, 0, size) + data + bytes(-len(data) % 4)


MAP_RAW = map_request().emit()


@pytest.mark.parametrize("raw, expected", [
    (b"\x02", PcpDrop(PcpDropReason.TOO_SHORT)),
    (b"\x02\x81" + bytes(58), PcpDrop(PcpDropReason.NOT_A_REQUEST)),
    (b"\x01\x01" + MAP_RAW[2:], PcpResult.UNSUPP_VERSION),
    (b"\x03\x01" + MAP_RAW[2:], PcpResult.UNSUPP_VERSION),
    (b"\x02\x03" + MAP_RAW[2:], PcpResult.UNSUPP_OPCODE),
    (b"\x02\x01", PcpResult.MALFORMED_REQUEST),
    (MAP_RAW[:-4], PcpResult.MALFORMED_REQUEST),
    (MAP_RAW + b"\x00\x00", PcpResult.MALFORMED_REQUEST),
    (MAP_RAW + _option(130, bytes(1100)), PcpResult.MALFORMED_REQUEST),
    (MAP_RAW + _option(9), PcpResult.UNSUPP_OPTION),
    (MAP_RAW + _option(0), PcpResult.UNSUPP_OPTION),
    (MAP_RAW + _option(1, bytes(12)), PcpResult.MALFORMED_OPTION),
    (MAP_RAW + _option(2) + _option(2), PcpResult.MALFORMED_OPTION),
    (MAP_RAW + _option(1, bytes(16)) * 2, PcpResult.MALFORMED_OPTION),
    (MAP_RAW + struct.pack("!BBH", 3, 0, 20), PcpResult.MALFORMED_OPTION),
    (MAP_RAW + _option(3, struct.pack("!xBH", 95, 0) + pcp.address_to_wire(CLIENT)),
     PcpResult.MALFORMED_OPTION),
    (MAP_RAW + _option(3, struct.pack("!xBH", 129, 0) + bytes(16)), PcpResult.MALFORMED_OPTION),
    (_raw(PcpRequest(PcpOpcode.PEER, 60, CLIENT, PeerData(NONCE, 17, 1, 1, CLIENT, 1, CLIENT)))
     + _option(2), PcpResult.MALFORMED_OPTION),
    (MAP_RAW + b"\x02\x00", PcpResult.MALFORMED_REQUEST),
], ids=["one-octet", "r-bit", "version-1", "version-3", "opcode-3", "header-only",
        "short-map", "not-multiple-of-4", "over-1100", "unknown-mandatory-option",
        "option-0", "third-party-wrong-length", "prefer-failure-twice", "third-party-twice",
        "option-past-end", "filter-prefix-95-for-ipv4", "filter-prefix-129",
        "prefer-failure-in-peer", "half-option-header"])
def test_requests_are_dropped_or_refused_in_section_8_3_order(raw, expected):
    parsed = pcp.parse_request(raw)
    if isinstance(expected, PcpDrop):
        assert parsed == expected
    else:
        assert isinstance(parsed, PcpError) and parsed.result == expected


def test_unknown_optional_options_are_skipped_not_refused():
    parsed = pcp.parse_request(MAP_RAW + _option(200, b"abc"))
    assert isinstance(parsed, PcpRequest) and parsed.options == (UnknownOption(200, b"abc"),)


def test_error_answers_copy_the_request_so_the_nonce_matches():
    error = PcpError(PcpResult.UNSUPP_OPTION, 1, MAP_RAW + _option(9))
    answer = pcp.parse_response(pcp.error_response(error, 1800, 7))
    assert answer.result == PcpResult.UNSUPP_OPTION and answer.data.nonce == NONCE


def test_error_answers_are_at_most_1100_octets():
    error = PcpError(PcpResult.MALFORMED_REQUEST, 1, MAP_RAW + bytes(2000))
    assert len(pcp.error_response(error, 30, 0)) == 1100


def test_unsupported_version_answer_names_version_2_in_a_bare_header():
    raw = service().handle_datagram(b"\x01\x01" + MAP_RAW[2:], HOST, 1.0).replies[0].data
    assert len(raw) == 24 and raw[0] == 2 and raw[3] == PcpResult.UNSUPP_VERSION


# -- version negotiation with NAT-PMP (section 9) ---------------------------------

def test_version_0_on_5351_is_nat_pmp():
    reply = service().handle_datagram(b"\x00\x00", HOST, 1.0).replies[0].data
    assert isinstance(natpmp.parse_response(reply), natpmp.ExternalAddressResponse)


def test_pcp_request_to_a_nat_pmp_only_server_gets_nat_pmp_unsupported_version():
    reply = service(pcp=False).handle_datagram(MAP_RAW, HOST, 1.0).replies[0].data
    assert reply[0] == 0 and natpmp.parse_response(reply).result == natpmp.NatpmpResult.UNSUPPORTED_VERSION


def test_nat_pmp_request_to_a_pcp_only_server_gets_pcp_unsupported_version():
    reply = service(natpmp=False).handle_datagram(b"\x00\x00", HOST, 1.0).replies[0].data
    assert pcp.parse_response(reply).result == PcpResult.UNSUPP_VERSION


def test_both_off_drops_and_counts():
    svc = service(natpmp=False, pcp=False)
    assert svc.handle_datagram(MAP_RAW, HOST, 1.0).replies == ()
    assert svc.counters == {"udp5351.dropped.disabled": 1}


# -- MAP semantics, one result code each --------------------------------------------

def test_map_success_gives_the_suggested_port_and_our_address():
    answer = ask(service(), map_request(external=6000).emit())
    assert answer.result == PcpResult.SUCCESS and answer.lifetime == 3600
    assert answer.data == MapData(NONCE, 17, 5000, 6000, IPv4Address("203.0.113.1"))


def test_lifetime_is_clamped_to_the_policy():
    svc = service(min_lifetime=120, max_lifetime=600)
    assert ask(svc, map_request(5000, 10).emit()).lifetime == 120
    assert ask(svc, map_request(5001, 99999).emit()).lifetime == 600


def test_refresh_with_the_same_nonce_keeps_the_external_port():
    svc = service()
    first = ask(svc, map_request(external=0).emit())
    again = ask(svc, map_request(external=7000, lifetime=7200).emit(), now=100.0)
    assert again.data.external_port == first.data.external_port and again.lifetime == 7200


@pytest.mark.parametrize("lifetime", [3600, 0], ids=["refresh", "delete"])
def test_another_nonce_may_neither_refresh_nor_delete(lifetime):
    svc = service()
    ask(svc, map_request().emit())
    answer = ask(svc, map_request(lifetime=lifetime, nonce=OTHER_NONCE).emit())
    assert answer.result == PcpResult.NOT_AUTHORIZED and len(svc.mappings()) == 1
    assert answer.lifetime == 1800


def test_delete_with_the_nonce_removes_and_answers_lifetime_0():
    svc = service()
    ask(svc, map_request().emit())
    answer = ask(svc, map_request(lifetime=0).emit())
    assert answer.result == PcpResult.SUCCESS and answer.lifetime == 0 and not svc.mappings()


def test_delete_of_nothing_succeeds():
    assert ask(service(), map_request(lifetime=0).emit()).result == PcpResult.SUCCESS


def test_delete_all_ports_removes_every_entry_with_the_nonce():
    svc = service()
    for port in (5000, 5001):
        ask(svc, map_request(port).emit())
    ask(svc, map_request(5002, nonce=OTHER_NONCE).emit())
    ask(svc, map_request(0, lifetime=0, protocol=0).emit())
    assert [m.internal.port for m in svc.mappings()] == [5002]


def test_address_mismatch_when_the_client_field_is_not_the_source():
    answer = ask(service(), map_request(client=IPv4Address("192.168.1.9")).emit())
    assert answer.result == PcpResult.ADDRESS_MISMATCH


def test_unsupported_protocol():
    assert ask(service(), map_request(protocol=132).emit()).result == PcpResult.UNSUPP_PROTOCOL


def test_all_ports_is_not_authorized():
    assert ask(service(), map_request(0).emit()).result == PcpResult.NOT_AUTHORIZED


def test_network_failure_without_an_external_address():
    svc = PortMappingService(PortMappingPolicy.every_protocol(), None, random.Random(1))
    answer = ask(svc, map_request().emit())
    assert answer.result == PcpResult.NETWORK_FAILURE and answer.lifetime == 30


def test_third_party_needs_the_policy():
    request = map_request(options=[ThirdParty(IPv4Address("192.168.1.7"))]).emit()
    assert ask(service(), request).result == PcpResult.NOT_AUTHORIZED
    svc = service(allow_third_party=True)
    answer = ask(svc, request)
    assert answer.result == PcpResult.SUCCESS and ThirdParty(IPv4Address("192.168.1.7")) in answer.options
    assert svc.mappings()[0].internal == Endpoint.of("192.168.1.7", 5000)


def test_third_party_with_an_ipv6_address_is_malformed_option():
    request = map_request(options=[ThirdParty(ip_address("2001:db8::1"))]).emit()
    assert ask(service(), request).result == PcpResult.MALFORMED_OPTION


def test_prefer_failure_refuses_a_taken_port():
    svc = service()
    ask(svc, map_request(5000, external=6000).emit())
    answer = ask(svc, map_request(5001, external=6000, options=[PreferFailure()]).emit())
    assert answer.result == PcpResult.CANNOT_PROVIDE_EXTERNAL and answer.lifetime == 30


def test_without_prefer_failure_a_taken_port_gives_another():
    svc = service()
    ask(svc, map_request(5000, external=6000).emit())
    answer = ask(svc, map_request(5001, external=6000).emit())
    assert answer.result == PcpResult.SUCCESS and answer.data.external_port != 6000


def test_prefer_failure_refuses_another_external_address():
    request = PcpRequest(PcpOpcode.MAP, 60, CLIENT,
                         MapData(NONCE, 17, 5000, 5000, IPv4Address("198.51.100.1")),
                         (PreferFailure(),))
    assert ask(service(), request.emit()).result == PcpResult.CANNOT_PROVIDE_EXTERNAL


def test_filters_become_remote_peers_and_prefix_0_clears_them():
    svc = service()
    one = Filter(120, 3478, IPv4Address("198.51.100.7"))
    ask(svc, map_request(options=[Filter(128, 1, IPv4Address("192.0.2.1")), Filter(0, 0, CLIENT), one]).emit())
    (peer,) = svc.mappings()[0].filters
    assert str(peer.network) == "198.51.100.0/24" and peer.port == 3478


def test_too_many_filters_is_excessive_remote_peers():
    many = [Filter(128, 0, IPv4Address(f"198.51.100.{i}")) for i in range(3)]
    assert ask(service(max_pcp_filters=2), map_request(options=many).emit()).result \
        == PcpResult.EXCESSIVE_REMOTE_PEERS


def test_quota_is_user_ex_quota_and_a_full_table_no_resources():
    svc = service(max_mappings_per_host=1)
    ask(svc, map_request(5000).emit())
    assert ask(svc, map_request(5001).emit()).result == PcpResult.USER_EX_QUOTA
    full = service(max_mappings=1)
    ask(full, map_request(5000).emit())
    other = Endpoint.of("192.168.1.3", 1)
    answer = ask(full, map_request(client=IPv4Address("192.168.1.3")).emit(), sender=other)
    assert answer.result == PcpResult.NO_RESOURCES


def test_no_free_port_is_no_resources():
    svc = PortMappingService(PortMappingPolicy.every_protocol(), "203.0.113.1", random.Random(1),
                             lambda proto, port: False)
    assert ask(svc, map_request().emit()).result == PcpResult.NO_RESOURCES


def test_an_entry_made_by_upnp_is_not_authorized():
    svc = service()
    svc.grant(MappingRequest(MappingKind.UPNP, Proto.UDP, Endpoint(HOST.addr, 5000), 5000,
                             None, HOST.addr, PortChoice.FIXED), 1.0)
    assert ask(svc, map_request().emit()).result == PcpResult.NOT_AUTHORIZED


def test_peer_is_unsupported_opcode_until_the_engine_answers_it():
    request = PcpRequest(PcpOpcode.PEER, 60, CLIENT,
                         PeerData(NONCE, 17, 5000, 0, pcp.UNSPECIFIED_V4, 3478,
                                  IPv4Address("198.51.100.1")))
    answer = ask(service(), request.emit())
    assert answer.result == PcpResult.UNSUPP_OPCODE and answer.data.nonce == NONCE


def test_announce_is_answered_with_success_and_the_epoch():
    answer = ask(service(), PcpRequest(PcpOpcode.ANNOUNCE, 0, CLIENT).emit(), now=77.0)
    assert (answer.opcode, answer.result, answer.epoch) == (PcpOpcode.ANNOUNCE, PcpResult.SUCCESS, 77)


@pytest.mark.parametrize("result", list(PcpResult))
def test_every_result_code_has_a_lifetime_class(result):
    assert isinstance(result.is_short_lived, bool)


# -- our own client, answered by our own server core --------------------------------

def test_client_requests_are_parsed_by_the_server_core():
    request = pcp_client.map_request("192.168.1.2", 5000, external_port=6000, lifetime=600,
                                     protocol="tcp", nonce=NONCE, third_party="192.168.1.2",
                                     prefer_failure=True)
    raw = request.emit()
    assert pcp.parse_request(raw) == request
    answer = ask(service(), raw)
    assert pcp_client.matches(answer, request)
    report, status = pcp_client.describe(answer, request, "192.168.1.1", 1)
    assert status == 0 and report["external_port"] == 6000 and report["result"] == "SUCCESS"


def test_client_ignores_answers_with_another_nonce():
    request = pcp_client.map_request("192.168.1.2", 5000, nonce=NONCE)
    other = pcp_client.map_request("192.168.1.2", 5000, nonce=OTHER_NONCE)
    assert not pcp_client.matches(ask(service(), other.emit()), request)


def test_client_delete_without_the_nonce_reports_not_authorized():
    svc = service()
    ask(svc, pcp_client.map_request("192.168.1.2", 5000, nonce=NONCE).emit())
    delete = pcp_client.map_request("192.168.1.2", 5000, lifetime=0, nonce=OTHER_NONCE)
    report, status = pcp_client.describe(ask(svc, delete.emit()), delete, "gw", 1)
    assert (report["result"], status) == ("NOT_AUTHORIZED", 1)


def test_client_timeout_and_nat_pmp_only_have_their_own_exit_status():
    request = pcp_client.map_request("192.168.1.2", 5000, nonce=NONCE)
    assert pcp_client.describe("timeout", request, "gw", 3)[1] == 2
    assert pcp_client.describe("natpmp-only", request, "gw", 1)[1] == 1


@given(st.integers(0, 2**32), st.floats(1, 3000))
def test_retransmissions_double_with_jitter_and_stop_at_the_timeout(seed, timeout):
    offsets = pcp_client.retransmit_offsets(random.Random(seed), timeout)
    assert offsets[0] == 0 and all(t < timeout for t in offsets)
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    if gaps:
        assert 2.7 <= gaps[0] <= 3.3
    for a, b in zip(gaps, gaps[1:]):
        assert b <= pcp_client.MRT * 1.1 and (b >= 1.8 * a or b >= 0.9 * pcp_client.MRT)


def test_default_timeout_gives_three_sends():
    assert len(pcp_client.retransmit_offsets(random.Random(1), pcp_client.DEFAULT_TIMEOUT)) == 3
