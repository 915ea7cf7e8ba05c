"""NAT-PMP (RFC 6886): codec round trips, every result code, natpmpc's captured bytes."""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from natlab.engine.types import Endpoint, Proto
from natlab.portmap import natpmp
from natlab.portmap.natpmp import (
    BadRequest, ErrorResponse, ExternalAddressRequest, ExternalAddressResponse, MapRequest,
    MapResponse, NatpmpProblem, NatpmpResult,
)
from natlab.portmap.service import PortMappingService
from natlab.portmap.types import (
    MapPort, MappingKind, MappingRequest, PortChoice, PortMappingPolicy, UnmapPort,
)

CAPTURED = Path(__file__).resolve().parents[1] / "data" / "portmap" / "captured"
HOST = Endpoint.of("192.168.1.2", 40000)
u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
protos = st.sampled_from([Proto.UDP, Proto.TCP])
results = st.sampled_from(list(NatpmpResult))


def service(**knobs) -> PortMappingService:
    return PortMappingService(PortMappingPolicy.every_protocol(**knobs), "203.0.113.1", random.Random(3))


def ask(svc: PortMappingService, data: bytes, now: float = 10.0, sender: Endpoint = HOST):
    outcome = svc.handle_datagram(data, sender, now)
    answer = natpmp.parse_response(outcome.replies[0].data) if outcome.replies else None
    return answer, outcome


# -- codec --------------------------------------------------------------------

@given(protos, u16, u16, u32)
def test_map_request_round_trips(proto, internal, external, lifetime):
    request = MapRequest(proto, internal, external, lifetime)
    assert len(request.emit()) == 12
    assert natpmp.parse_request(request.emit()) == request


@given(protos, results, u32, u16, u16, u32)
def test_map_response_round_trips(proto, result, epoch, internal, external, lifetime):
    response = MapResponse(proto, result, epoch, internal, external, lifetime)
    assert len(response.emit()) == 16
    assert natpmp.parse_response(response.emit()) == response


@given(results, u32, u32)
def test_external_address_response_round_trips(result, epoch, address):
    response = ExternalAddressResponse(result, epoch, IPv4Address(address))
    assert len(response.emit()) == 12
    assert natpmp.parse_response(response.emit()) == response


@given(st.integers(0, 127), st.sampled_from([r for r in NatpmpResult if r]), u32)
def test_error_response_round_trips_as_eight_octets(opcode, result, epoch):
    response = ErrorResponse(opcode, result, epoch)
    data = response.emit()
    assert len(data) == 8 and data[1] == 128 + opcode
    assert natpmp.parse_response(data) == response


def test_external_address_request_is_two_octets():
    assert ExternalAddressRequest().emit() == b"\x00\x00"
    assert natpmp.parse_request(b"\x00\x00") == ExternalAddressRequest()


@pytest.mark.parametrize("data, problem", [
    (b"", NatpmpProblem.TRUNCATED),
    (b"\x00", NatpmpProblem.TRUNCATED),
    (b"\x00\x01\x00\x00\x13\x88", NatpmpProblem.TRUNCATED),
    (b"\x00\x80", NatpmpProblem.NOT_A_REQUEST),
    (b"\x00\x81" + bytes(14), NatpmpProblem.NOT_A_REQUEST),
    (b"\x01\x00", NatpmpProblem.UNSUPPORTED_VERSION),
    (b"\x00\x03", NatpmpProblem.UNSUPPORTED_OPCODE),
    (b"\x00\x7f" + bytes(10), NatpmpProblem.UNSUPPORTED_OPCODE),
    (b"\x00\x00" + bytes(1200), NatpmpProblem.OVERSIZED),
], ids=["empty", "one-octet", "short-map", "response-0", "response-1", "version-1",
        "opcode-3", "opcode-127", "oversized"])
def test_bad_requests_are_values_with_a_reason(data, problem):
    parsed = natpmp.parse_request(data)
    assert isinstance(parsed, BadRequest) and parsed.problem == problem


def test_trailing_octets_after_a_map_request_are_ignored():
    request = MapRequest(Proto.UDP, 5000, 5000, 60)
    assert natpmp.parse_request(request.emit() + b"\x00" * 4) == request


# -- the service's answers, one per result code --------------------------------

def test_external_address_is_answered_with_the_epoch():
    answer, _ = ask(service(), b"\x00\x00", now=42.0)
    assert answer == ExternalAddressResponse(NatpmpResult.SUCCESS, 42, IPv4Address("203.0.113.1"))


def test_map_grants_the_suggested_port_and_asks_the_engine_to_map_it():
    answer, outcome = ask(service(), MapRequest(Proto.UDP, 5000, 6000, 3600).emit())
    assert answer == MapResponse(Proto.UDP, NatpmpResult.SUCCESS, 10, 5000, 6000, 3600)
    (intent,) = outcome.intents
    assert isinstance(intent, MapPort) and intent.mapping.kind is MappingKind.NATPMP
    assert intent.mapping.internal == Endpoint(HOST.addr, 5000)


def test_repeating_a_map_refreshes_the_same_external_port():
    svc = service()
    first, _ = ask(svc, MapRequest(Proto.TCP, 22, 0, 3600).emit())
    again, _ = ask(svc, MapRequest(Proto.TCP, 22, 2222, 7200).emit(), now=20.0)
    assert again.external_port == first.external_port and again.lifetime == 7200


def test_non_zero_version_gets_unsupported_version_when_pcp_is_off():
    answer, _ = ask(service(pcp=False), b"\x02\x01" + bytes(22))
    assert answer == ErrorResponse(1, NatpmpResult.UNSUPPORTED_VERSION, 10)


def test_unknown_opcode_gets_unsupported_opcode():
    answer, _ = ask(service(), b"\x00\x09" + bytes(10))
    assert answer == ErrorResponse(9, NatpmpResult.UNSUPPORTED_OPCODE, 10)


def test_deleting_an_entry_made_by_upnp_is_not_authorized():
    svc = service()
    svc.grant(MappingRequest(MappingKind.UPNP, Proto.UDP, Endpoint(HOST.addr, 5000), 5000,
                             None, HOST.addr, PortChoice.FIXED), 1.0)
    answer, outcome = ask(svc, MapRequest(Proto.UDP, 5000, 0, 0).emit())
    assert answer.result == NatpmpResult.NOT_AUTHORIZED and not outcome.intents


def test_no_external_address_is_network_failure():
    svc = PortMappingService(PortMappingPolicy.every_protocol(), None, random.Random(1))
    address, _ = ask(svc, b"\x00\x00")
    mapped, _ = ask(svc, MapRequest(Proto.UDP, 5000, 5000, 60).emit())
    assert address.result == mapped.result == NatpmpResult.NETWORK_FAILURE


def test_quota_is_out_of_resources():
    svc = service(max_mappings_per_host=1)
    ask(svc, MapRequest(Proto.UDP, 5000, 0, 60).emit())
    answer, _ = ask(svc, MapRequest(Proto.UDP, 5001, 0, 60).emit())
    assert answer == MapResponse(Proto.UDP, NatpmpResult.OUT_OF_RESOURCES, 10, 5001, 0, 0)


def test_delete_answers_external_port_zero_and_unmaps():
    svc = service()
    ask(svc, MapRequest(Proto.UDP, 5000, 5000, 60).emit())
    answer, outcome = ask(svc, MapRequest(Proto.UDP, 5000, 5000, 0).emit())
    assert answer == MapResponse(Proto.UDP, NatpmpResult.SUCCESS, 10, 5000, 0, 0)
    assert [type(i) for i in outcome.intents] == [UnmapPort] and not svc.mappings()


def test_delete_of_nothing_succeeds():
    answer, outcome = ask(service(), MapRequest(Proto.TCP, 80, 0, 0).emit())
    assert answer.result == NatpmpResult.SUCCESS and not outcome.intents


def test_delete_all_removes_only_the_senders_entries_of_that_protocol():
    svc = service()
    other = Endpoint.of("192.168.1.3", 40000)
    for port in (5000, 5001):
        ask(svc, MapRequest(Proto.UDP, port, 0, 60).emit())
    ask(svc, MapRequest(Proto.TCP, 5000, 0, 60).emit())
    ask(svc, MapRequest(Proto.UDP, 5000, 0, 60).emit(), sender=other)
    ask(svc, MapRequest(Proto.UDP, 0, 0, 0).emit())
    left = {(m.protocol, m.internal.addr) for m in svc.mappings()}
    assert left == {(Proto.TCP, HOST.addr), (Proto.UDP, other.addr)}


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x80" + bytes(10), b"\x00\x01\x00"])
def test_truncated_and_response_datagrams_are_dropped_and_counted(data):
    svc = service()
    _, outcome = ask(svc, data)
    assert outcome.replies == () and sum(svc.counters.values()) == 1


# -- natpmpc's bytes ------------------------------------------------------------

def _captured(prefix: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted(CAPTURED.glob(f"{prefix}-*.udp5351.bin"))]


def test_natpmpc_requests_parse_as_the_map_it_was_asked_for():
    external, mapping = _captured("natpmpc-map-udp")
    assert natpmp.parse_request(external) == ExternalAddressRequest()
    assert natpmp.parse_request(mapping) == MapRequest(Proto.UDP, 5000, 5000, 3600)
    assert natpmp.parse_request(_captured("natpmpc-map-tcp")[1]) == MapRequest(Proto.TCP, 8080, 0, 7200)
    assert natpmp.parse_request(_captured("natpmpc-delete")[1]) == MapRequest(Proto.UDP, 5000, 5000, 0)


def test_natpmpc_session_is_answered_end_to_end():
    svc = service()
    for data in _captured("natpmpc-map-udp") + _captured("natpmpc-delete"):
        answer, _ = ask(svc, data)
        assert answer.result == NatpmpResult.SUCCESS
    assert svc.mappings() == ()


def test_natpmpc_printed_what_the_service_answered():
    text = (CAPTURED / "natpmpc-map-udp.out").read_text()
    assert "Public IP address : 203.0.113.1" in text
    assert "Mapped public port 5000 protocol UDP to local port 5000 liftime 3600" in text
