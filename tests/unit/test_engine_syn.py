"""Unsolicited inbound SYNs (RFC 5382 REQ-4): dropped at once, answered after 6 s unless
an outbound SYN for the same connection (simultaneous open) comes first."""

from __future__ import annotations

import pytest

from enginekit import ACK, RST, SYN, A, Nat, X1, Y1, Y2, dst_of, policy, src_of, tcp, udp, valid
from natlab.engine import Dependency, DropReason, Side, SynResponse
from natlab.packet import TCPFlags
from natlab.packet.headers import to_str

HOLD = 6.0


def _answers(nat: Nat, t: float):
    return nat.at(t).expire().emits


def _unsolicited_syn(nat: Nat, mapped: bool):
    if mapped:  # APDF: a mapping exists but Y2 may not use it
        nat.translated_out(tcp(A, 5000, Y1, 443, flags=SYN))
        return nat.dropped(tcp(Y2, 4000, X1, 5000, flags=SYN)), DropReason.FILTERED
    return nat.dropped(tcp(Y2, 4000, X1, 5000, flags=SYN)), DropReason.NO_MAPPING


@pytest.mark.parametrize("mapped", [False, True], ids=["no_mapping", "filtered"])
@pytest.mark.parametrize("answer", list(SynResponse), ids=lambda a: a.value)
def test_unsolicited_syn_is_dropped_at_once_and_answered_after_the_hold(answer, mapped):
    nat = Nat(policy(filtering=Dependency.ADDRESS_AND_PORT_DEPENDENT, tcp={"unsolicited_syn": answer}))
    drop, reason = _unsolicited_syn(nat, mapped)
    assert drop.reason is reason
    assert drop.emits == ()
    assert _answers(nat, HOLD - 0.01) == ()
    emits = _answers(nat, HOLD + 0.01)
    if answer is SynResponse.DROP:
        assert emits == ()
        return
    assert len(emits) == 1 and emits[0].side is Side.OUTSIDE
    p = valid(emits[0].data)
    assert (to_str(p.ip.src), to_str(p.ip.dst)) == (X1, Y2)
    if answer is SynResponse.ICMP:
        assert (p.l4.type, p.l4.code) == (3, 3)
    else:
        assert p.l4.flags & TCPFlags.RST
        assert (p.l4.sport, p.l4.dport) == (5000, 4000)
    assert _answers(nat, 100) == ()  # answered once


def test_syn_hold_can_be_longer_than_six_seconds():
    nat = Nat(policy(tcp={"syn_hold": 10.0}))
    nat.dropped(tcp(Y2, 4000, X1, 5000, flags=SYN))
    assert _answers(nat, 9.9) == ()
    assert len(_answers(nat, 10.1)) == 1


@pytest.mark.parametrize("mapped", [False, True], ids=["no_mapping", "filtered"])
def test_outbound_syn_within_the_hold_cancels_the_answer_and_opens_the_connection(mapped):
    nat = Nat(policy(filtering=Dependency.ADDRESS_AND_PORT_DEPENDENT))
    _unsolicited_syn(nat, mapped)
    out = nat.at(2).translated_out(tcp(A, 5000, Y2, 4000, flags=SYN))
    assert src_of(out) == (X1, 5000)
    assert _answers(nat, HOLD + 1) == ()
    # Simultaneous open: the peer's retransmitted SYN is now admitted under APDF.
    back = nat.at(HOLD + 2).translated_in(tcp(Y2, 4000, X1, 5000, flags=SYN))
    assert dst_of(back) == (A, 5000)


def test_inbound_syn_ack_without_mapping_is_dropped_without_answer():
    nat = Nat()
    assert nat.dropped(tcp(Y2, 4000, X1, 5000, flags=SYN | ACK)).reason is DropReason.NO_MAPPING
    assert _answers(nat, HOLD + 1) == ()


def test_answer_is_not_lost_when_a_packet_arrives_after_the_hold():
    nat = Nat()
    nat.dropped(tcp(Y2, 4000, X1, 5000, flags=SYN))
    v = nat.at(HOLD + 1).into(udp(Y1, 53, X1, 7000))  # any packet; the engine expires what is due
    assert len(v.emits) + len(nat.expire().emits) == 1


def test_held_syn_rst_never_makes_the_engine_raise():
    nat = Nat(policy(tcp={"unsolicited_syn": SynResponse.RST}))
    nat.dropped(tcp(Y2, 4000, X1, 5000, flags=SYN | RST))
    assert nat.at(HOLD + 1).expire().emits == ()  # never answer a RST with a RST
