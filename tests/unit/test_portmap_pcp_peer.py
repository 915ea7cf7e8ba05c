"""PCP PEER (RFC 6887 sections 12, 11.3, 13, 15): codec, every result, the engine behind the server."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, ip_address

import pytest
from hypothesis import given, strategies as st

from natlab.engine import Engine, Forward, Policy, Side
from natlab.engine.policy import Dependency, Limits
from natlab.engine.types import Endpoint, Proto
from natlab.packet import build
from natlab.portmap import pcp, pcp_client
from natlab.portmap.pcp import (
    Filter, PcpError, PcpOpcode, PcpRequest, PcpResponse, PcpResult, PeerData, PreferFailure, ThirdParty,
    UnknownOption,
)
from natlab.portmap.service import PortMappingService
from natlab.portmap.types import PortMappingPolicy

POOL = "203.0.113.1"
HOST = Endpoint.of("192.168.1.2", 40000)
CLIENT = IPv4Address("192.168.1.2")
REMOTE = IPv4Address("198.51.100.9")
NONCE, OTHER = b"\x01" * 12, b"\x02" * 12

u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
v4 = st.integers(0, 2**32 - 1).map(IPv4Address)
nonces = st.binary(min_size=12, max_size=12)
results = st.sampled_from(list(PcpResult))


def gateway(filtering=Dependency.ADDRESS_AND_PORT_DEPENDENT, limits=None, **knobs):
    """A real engine and the service in front of it, wired as the gateway shell wires them."""
    policy = Policy(filtering=filtering).replace(**({"limits": limits} if limits else {}))
    engine = Engine(policy, [POOL], random.Random(3))

    def peer(proto, internal, remote, suggested, until, nonce, now):
        return engine.peer(int(proto), internal, remote, suggested, until, nonce, now)[0]
    svc = PortMappingService(PortMappingPolicy.every_protocol(**knobs), POOL, random.Random(5), engine.port_free,
                             peer=peer)
    return engine, svc


def peer_request(port=5000, lifetime=3600, *, remote=REMOTE, remote_port=7000, external=0, nonce=NONCE,
                 protocol=17, options=(), client=CLIENT) -> PcpRequest:
    return PcpRequest(PcpOpcode.PEER, lifetime, client,
                      PeerData(nonce, protocol, port, external, pcp.UNSPECIFIED_V4, remote_port, remote),
                      tuple(options))


def ask(svc, request, now=10.0, sender=HOST) -> PcpResponse:
    (reply,) = svc.handle_datagram(request.emit() if isinstance(request, PcpRequest) else request,
                                   sender, now).replies
    return pcp.parse_response(reply.data)


# -- codec ------------------------------------------------------------------------

@given(u32, v4, nonces, st.integers(0, 255), u16, u16, v4, u16, v4, st.booleans())
def test_peer_request_with_third_party_round_trips(lifetime, client, nonce, proto, port, ext, ext_addr, rport,
                                                   remote, third):
    options = (ThirdParty(client),) if third else ()
    request = PcpRequest(PcpOpcode.PEER, lifetime, client, PeerData(nonce, proto, port, ext, ext_addr, rport, remote),
                         options)
    assert pcp.parse_request(request.emit()) == request


@given(results, u32, u32, nonces, u16, u16, v4, u16, v4)
def test_peer_response_round_trips_with_every_result(result, lifetime, epoch, nonce, port, ext, ext_addr, rport,
                                                    remote):
    response = PcpResponse(PcpOpcode.PEER, result, lifetime, epoch, PeerData(nonce, 6, port, ext, ext_addr, rport,
                                                                             remote))
    raw = response.emit()
    assert len(raw) == 24 + 56 and pcp.parse_response(raw) == response


@pytest.mark.parametrize("option", [PreferFailure(), Filter(128, 0, REMOTE)], ids=["prefer-failure", "filter"])
def test_map_only_options_in_a_peer_are_malformed_option(option):
    parsed = pcp.parse_request(peer_request(options=[option]).emit())
    assert isinstance(parsed, PcpError) and parsed.result == PcpResult.MALFORMED_OPTION


def test_a_truncated_peer_is_malformed_request_and_its_answer_copies_what_came():
    raw = peer_request().emit()[:24 + 36]
    parsed = pcp.parse_request(raw)
    assert isinstance(parsed, PcpError) and parsed.result == PcpResult.MALFORMED_REQUEST
    answer = pcp.error_response(parsed, 1800, 0)
    assert answer[1] == 0x80 | PcpOpcode.PEER and answer[24:36] == NONCE


def test_an_unknown_optional_option_in_a_peer_is_kept_and_not_echoed():
    engine, svc = gateway()
    answer = ask(svc, peer_request(options=[UnknownOption(200, b"abcd")]))
    assert answer.result == PcpResult.SUCCESS and answer.options == ()


# -- the server, with the engine behind it ----------------------------------------

def test_a_peer_answers_the_engines_mapping_and_the_peer_gets_in():
    engine, svc = gateway()
    answer = ask(svc, peer_request())
    assert answer.result == PcpResult.SUCCESS and answer.opcode == PcpOpcode.PEER
    data = answer.data
    assert (data.nonce, data.remote_address, data.remote_port) == (NONCE, REMOTE, 7000)
    assert data.external_address == IPv4Address(POOL) and answer.lifetime == 3600
    assert svc.mappings() == ()  # the service keeps no table of PEERs: the engine has it
    [view] = engine.mappings()
    assert view.kind == "dynamic" and view.external_port == data.external_port
    inbound = build.udp(str(REMOTE), 7000, POOL, data.external_port, b"hi")
    assert type(engine.process(inbound, Side.OUTSIDE, 11.0)) is Forward


def test_the_lifetime_is_clamped_to_the_policy_and_never_below_the_mappings_own_timer():
    engine, svc = gateway(min_lifetime=120, max_lifetime=600)
    assert ask(svc, peer_request(lifetime=99999)).lifetime == 600
    t = engine.policy.timeouts
    assert ask(svc, peer_request(5001, lifetime=5)).lifetime == max(120, int(t.udp_unreplied or t.udp))
    own = int(engine.policy.timeouts.udp)
    engine2, svc2 = gateway(min_lifetime=1, max_lifetime=10)
    engine2.process(build.udp(str(CLIENT), 5000, str(REMOTE), 7000, b"x"), Side.INSIDE, 10.0)
    engine2.process(build.udp(str(REMOTE), 7000, POOL, engine2.mappings()[0].external_port, b"y"), Side.OUTSIDE, 10.0)
    assert ask(svc2, peer_request(lifetime=5)).lifetime == own  # replied: the session's own timer is longer


def test_the_suggested_port_is_given_when_free_and_the_policy_honours_it():
    _, svc = gateway()
    assert ask(svc, peer_request(external=45000)).data.external_port == 45000
    _, picky = gateway(honour_requested_port=False)
    assert ask(picky, peer_request(external=45000)).result == PcpResult.SUCCESS
    _, low = gateway()
    assert ask(low, peer_request(external=80)).data.external_port != 80


def test_a_refresh_with_another_nonce_or_a_delete_with_it_is_not_authorized():
    engine, svc = gateway()
    ask(svc, peer_request())
    for lifetime in (3600, 0):
        answer = ask(svc, peer_request(lifetime=lifetime, nonce=OTHER), now=20.0)
        assert answer.result == PcpResult.NOT_AUTHORIZED and answer.lifetime == 1800


def test_lifetime_zero_ends_the_hold_and_answers_lifetime_0():
    engine, svc = gateway()
    port = ask(svc, peer_request()).data.external_port
    answer = ask(svc, peer_request(lifetime=0), now=20.0)
    assert answer.result == PcpResult.SUCCESS and answer.lifetime == 0 and answer.data.external_port == port
    engine.expire(20.0 + engine.policy.timeouts.udp + 1)
    assert engine.mappings() == ()


@pytest.mark.parametrize("changes,result", [
    ({"protocol": 0}, PcpResult.MALFORMED_REQUEST),
    ({"port": 0}, PcpResult.MALFORMED_REQUEST),
    ({"remote_port": 0}, PcpResult.MALFORMED_REQUEST),
    ({"remote": IPv4Address(0)}, PcpResult.MALFORMED_REQUEST),
    ({"remote": ip_address("2001:db8::1")}, PcpResult.MALFORMED_REQUEST),
    ({"protocol": 132}, PcpResult.UNSUPP_PROTOCOL),
    ({"client": IPv4Address("192.168.1.9")}, PcpResult.ADDRESS_MISMATCH),
    ({"options": [ThirdParty(IPv4Address("192.168.1.7"))]}, PcpResult.NOT_AUTHORIZED),
    ({"options": [ThirdParty(ip_address("2001:db8::1"))]}, PcpResult.MALFORMED_OPTION),
], ids=["protocol-0", "internal-port-0", "remote-port-0", "remote-unspecified", "remote-ipv6",
        "sctp", "address-mismatch", "third-party-not-allowed", "third-party-ipv6"])
def test_each_bad_peer_gets_its_result_and_its_nonce_back(changes, result):
    _, svc = gateway()
    answer = ask(svc, peer_request(**changes))
    assert answer.result == result and answer.data.nonce == NONCE


def test_third_party_makes_the_mapping_for_the_other_host_when_allowed():
    engine, svc = gateway(allow_third_party=True)
    answer = ask(svc, peer_request(options=[ThirdParty(IPv4Address("192.168.1.7"))]))
    assert answer.result == PcpResult.SUCCESS and ThirdParty(IPv4Address("192.168.1.7")) in answer.options
    assert engine.mappings()[0].internal == "192.168.1.7:5000"


def test_a_nat_out_of_room_is_no_resources_and_a_host_over_its_limit_user_ex_quota():
    _, full = gateway(limits=Limits(max_mappings=1))
    ask(full, peer_request())
    other = Endpoint.of("192.168.1.3", 1)
    assert ask(full, peer_request(client=IPv4Address("192.168.1.3")), sender=other).result == PcpResult.USER_EX_QUOTA
    engine, tight = gateway(limits=Limits(max_sessions=1))
    ask(tight, peer_request())
    assert ask(tight, peer_request(5001)).result == PcpResult.NO_RESOURCES


def test_no_external_address_is_network_failure():
    svc = PortMappingService(PortMappingPolicy.every_protocol(), None, random.Random(1),
                             peer=lambda *a: pytest.fail("the engine is not asked"))
    assert ask(svc, peer_request()).result == PcpResult.NETWORK_FAILURE


def test_every_peer_outcome_is_counted():
    _, svc = gateway()
    ask(svc, peer_request())
    ask(svc, peer_request(), now=11.0)
    ask(svc, peer_request(nonce=OTHER), now=12.0)
    ask(svc, peer_request(lifetime=0), now=13.0)
    c = svc.counters
    assert (c["pcp.peer.created"], c["pcp.peer.refreshed"], c["pcp.peer.released"]) == (1, 1, 1)
    assert c["pcp.peer.refused.nonce-mismatch"] == 1 and c["pcp.result.NOT_AUTHORIZED"] == 1


# -- natlab's PCP client --------------------------------------------------------------

def test_the_client_builds_a_peer_and_matches_only_its_answer():
    request = pcp_client.peer_request("192.168.1.2", 5000, "198.51.100.9", 7000, nonce=NONCE, lifetime=60)
    assert request.opcode == PcpOpcode.PEER and request.data.remote_port == 7000
    _, svc = gateway()
    answer = ask(svc, request)
    assert pcp_client.matches(answer, request)
    other = pcp_client.peer_request("192.168.1.2", 5000, "198.51.100.9", 7001, nonce=NONCE)
    assert not pcp_client.matches(answer, other)
    report, status = pcp_client.describe(answer, request, "192.168.1.1", 1)
    assert status == 0 and report["remote"] == "198.51.100.9:7000" and report["external_address"] == POOL
