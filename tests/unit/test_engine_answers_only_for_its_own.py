"""The NAT answers only for addresses it owns, never to or from broadcast or multicast,
and a limit-reached drop says which limit (issue: fail closed, never lie).

RFC 5382 REQ-4 lets a NAT answer an unsolicited SYN to *its* external address; a SYN
routed through it to anyone else is not its to answer. RFC 1812 4.3.2.7: no ICMP error
about a datagram from a broadcast or multicast address.
"""

from __future__ import annotations

import pytest

from enginekit import SYN, A, B, Nat, X1, Y1, Y2, policy, tcp, udp
from natlab.engine import DropReason, Side, SynResponse
from natlab.engine.types import is_unicast, to_int
from natlab.engine.verdicts import EventKind

HOLD = 6.0


@pytest.mark.parametrize("answer", [SynResponse.ICMP, SynResponse.RST])
def test_a_syn_to_an_address_the_nat_does_not_own_is_dropped_and_never_answered(answer):
    nat = Nat(policy(tcp={"unsolicited_syn": answer}))
    drop = nat.dropped(tcp(Y2, 4000, "10.99.1.2", 5000, flags=SYN))
    assert drop.reason is DropReason.NOT_OURS
    assert nat.at(HOLD + 1).expire().emits == ()
    assert nat.drops(DropReason.NOT_OURS) == 1


def test_udp_to_an_address_the_nat_does_not_own_counts_as_not_ours():
    nat = Nat()
    assert nat.dropped(udp(Y1, 53, "198.51.100.77", 5000)).reason is DropReason.NOT_OURS


@pytest.mark.parametrize("source", ["224.0.0.1", "255.255.255.255", "0.0.0.0", "240.0.0.1"])
def test_a_syn_from_a_broadcast_or_multicast_source_is_never_answered(source):
    nat = Nat(policy(tcp={"unsolicited_syn": SynResponse.ICMP}))
    nat.dropped(tcp(source, 4000, X1, 5000, flags=SYN))
    assert nat.at(HOLD + 1).expire().emits == ()


def test_a_syn_from_a_unicast_source_to_our_address_is_still_answered():
    nat = Nat(policy(tcp={"unsolicited_syn": SynResponse.ICMP}))
    nat.dropped(tcp(Y2, 4000, X1, 5000, flags=SYN))
    assert len(nat.at(HOLD + 1).expire().emits) == 1


def _limit_event(drop):
    (event,) = [e for e in drop.events if e.kind is EventKind.DROPPED]
    assert event.reason == DropReason.LIMIT_REACHED.value
    return event


def test_a_limit_reached_drop_says_the_total_limit():
    nat = Nat(policy(limits={"max_mappings": 1}))
    nat.translated_out(udp(A, 5000, Y1, 80))
    event = _limit_event(nat.dropped(udp(B, 5000, Y1, 80), side=Side.INSIDE))
    assert "max_mappings (1 in total)" in event.detail and event.internal == f"{B}:5000"


def test_a_limit_reached_drop_says_the_per_host_limit_and_the_host():
    nat = Nat(policy(limits={"max_mappings_per_host": 1}))
    nat.translated_out(udp(A, 5000, Y1, 80))
    event = _limit_event(nat.dropped(udp(A, 5001, Y1, 80), side=Side.INSIDE))
    assert f"max_mappings_per_host (1 for {A})" in event.detail


@pytest.mark.parametrize(("address", "unicast"), [
    ("192.168.1.2", True), ("203.0.113.1", True), ("0.0.0.0", False), ("0.1.2.3", False),
    ("224.0.0.1", False), ("239.255.255.250", False), ("240.0.0.1", False), ("255.255.255.255", False),
])
def test_is_unicast_tells_what_a_host_could_have(address, unicast):
    assert is_unicast(to_int(address)) is unicast
