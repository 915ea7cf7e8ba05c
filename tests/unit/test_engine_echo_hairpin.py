"""ICMP echo and hairpinning (RFC 5508 section 3.1, RFC 4787 REQ-9): an echo request to a
pool address is answered by the NAT as the router; one to a static 1:1 external address
is hairpinned to the static host, and its echo reply is hairpinned back."""

from __future__ import annotations

import pytest

from enginekit import A, B, Nat, X1, dst_of, icmp_echo, policy, src_of, valid
from natlab.engine import DropReason, Hairpin, Hairpinning, Refresh, Side, StaticNat
from natlab.packet import parse_packet

S, SX = "192.168.1.10", "203.0.113.50"  # a static 1:1 host and its external address
B_SX = "203.0.113.51"
STATIC = (StaticNat(S, SX),)


def _echo_type(data: bytes) -> int:
    return parse_packet(bytes(data)).l4.type


def test_echo_request_to_a_static_address_is_hairpinned_to_the_static_host_from_the_senders_mapping():
    nat = Nat(policy(static=STATIC))
    request = nat.hairpinned(icmp_echo(A, SX, 77, 1, payload=b"ping"))
    assert dst_of(request) == (S, src_of(request)[1]) and _echo_type(request) == 8
    x_ident = src_of(request)
    assert x_ident[0] == X1  # A's external ICMP mapping (REQ-9a)
    assert [(m.protocol, m.internal, m.external) for m in nat.mappings()] == [
        ("icmp", f"{A}:77", f"{x_ident[0]}:{x_ident[1]}")]
    reply = nat.hairpinned(icmp_echo(S, X1, x_ident[1], 1, reply=True, payload=b"ping"))
    assert (dst_of(reply), src_of(reply)[0]) == ((A, 77), SX) and _echo_type(reply) == 0
    c = nat.engine.counters.snapshot()
    assert c["hairpinned"] == 2 and c["answered"] == 0


def test_echo_request_to_a_static_address_keeps_the_internal_source_with_internal_source_hairpinning():
    nat = Nat(policy(static=STATIC, hairpinning=Hairpinning.INTERNAL_SOURCE))
    request = nat.hairpinned(icmp_echo(A, SX, 77, 1))
    assert (src_of(request), dst_of(request)) == ((A, 77), (S, 77))  # the reply goes straight to A


def test_echo_request_from_one_static_host_to_another_keeps_its_identifier_both_ways():
    nat = Nat(policy(static=STATIC + (StaticNat(B, B_SX),)))
    request = nat.hairpinned(icmp_echo(B, SX, 9, 1))
    assert (src_of(request), dst_of(request)) == ((B_SX, 9), (S, 9))
    reply = nat.hairpinned(icmp_echo(S, B_SX, 9, 1, reply=True))
    assert (src_of(reply), dst_of(reply)) == ((SX, 9), (B, 9))
    assert nat.mappings() == ()  # static hosts need no mapping


def test_echo_request_to_a_static_address_is_dropped_when_hairpinning_is_none():
    nat = Nat(policy(static=STATIC, hairpinning=Hairpinning.NONE))
    assert nat.dropped(icmp_echo(A, SX, 77, 1), Side.INSIDE).reason is DropReason.HAIRPIN_DISABLED


@pytest.mark.parametrize("mode", list(Hairpinning))
def test_echo_request_to_a_pool_address_is_answered_as_the_router_whatever_the_hairpinning(mode):
    nat = Nat(policy(static=STATIC, hairpinning=mode))
    v = nat.out(icmp_echo(A, X1, 5, 1, payload=b"router?"))
    assert type(v) is Hairpin and valid(v.data).l4.type == 0
    assert (src_of(v.data)[0], dst_of(v.data)) == (X1, (A, 5))
    assert nat.mappings() == () and nat.engine.counters.snapshot()["answered"] == 1


@pytest.mark.parametrize("replier", [A, S])
def test_echo_reply_from_inside_to_an_address_no_request_went_from_is_dropped(replier):
    nat = Nat(policy(static=STATIC))
    assert nat.dropped(icmp_echo(replier, X1, 1234, 1, reply=True), Side.INSIDE).reason is DropReason.NO_MAPPING


@pytest.mark.parametrize("refresh, expires", [(Refresh.OUTBOUND, 60), (Refresh.BOTH, 110)])
def test_hairpinned_echo_reply_refreshes_the_requesters_mapping_as_an_inbound_packet(refresh, expires):
    nat = Nat(policy(static=STATIC, refresh=refresh, timeouts={"icmp": 60.0}))
    x_ident = src_of(nat.hairpinned(icmp_echo(A, SX, 77, 1)))
    nat.at(50).hairpinned(icmp_echo(S, X1, x_ident[1], 1, reply=True))
    assert nat.mappings()[0].expires == expires
