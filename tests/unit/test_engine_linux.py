"""Linux MASQUERADE as it behaves: inbound-first remapping and conntrack UDP timers."""

from __future__ import annotations

import pytest

from enginekit import A, Nat, X1, Y1, Y2, policy, src_of, udp, udp_round_trip
from natlab.engine import Dependency, DropReason, InboundFirst, Refresh
from natlab.behaviours.presets import load_preset

APDF = Dependency.ADDRESS_AND_PORT_DEPENDENT
REMAP = policy(filtering=APDF, inbound_first=InboundFirst.REMAP, refresh=Refresh.BOTH,
               timeouts={"udp": 120.0, "udp_unreplied": 30.0})


def test_inbound_first_remap_gives_a_new_port_to_that_remote_only():
    nat = Nat(REMAP)
    assert udp_round_trip(nat, A, 5000, Y1, 3478) == (X1, 5000)  # learnt from a STUN server
    assert nat.dropped(udp(Y2, 7000, X1, 5000)).reason is DropReason.FILTERED  # the peer's packet first
    to_peer = src_of(nat.translated_out(udp(A, 5000, Y2, 7000)))
    assert to_peer[0] == X1 and to_peer[1] != 5000
    assert src_of(nat.translated_out(udp(A, 5000, Y1, 3478))) == (X1, 5000)  # others still see x
    assert src_of(nat.translated_out(udp(A, 5000, "198.51.100.77", 9))) == (X1, 5000)
    back = nat.translated_in(udp(Y2, 7000, *to_peer))  # the peer can answer the new port
    assert back


def test_inbound_first_remap_before_any_mapping_keeps_x_for_other_remotes():
    nat = Nat(REMAP)
    nat.dropped(udp(Y2, 7000, X1, 5000))
    assert src_of(nat.translated_out(udp(A, 5000, Y2, 7000)))[1] != 5000
    assert src_of(nat.translated_out(udp(A, 5000, Y1, 80))) == (X1, 5000)


def test_inbound_first_forget_keeps_the_endpoint_independent_mapping():
    nat = Nat(policy(filtering=APDF))
    udp_round_trip(nat, A, 5000, Y1, 3478)
    nat.dropped(udp(Y2, 7000, X1, 5000))
    assert src_of(nat.translated_out(udp(A, 5000, Y2, 7000))) == (X1, 5000)


def test_inbound_first_entry_lapses_after_the_unreplied_timer():
    nat = Nat(REMAP)
    udp_round_trip(nat, A, 5000, Y1, 3478)
    nat.dropped(udp(Y2, 7000, X1, 5000))
    nat.at(20).translated_out(udp(A, 5000, Y1, 3478))
    nat.at(31)
    assert src_of(nat.translated_out(udp(A, 5000, Y2, 7000))) == (X1, 5000)


STREAM = policy(refresh=Refresh.BOTH, timeouts={"udp": 120.0, "udp_unreplied": 30.0, "udp_stream_after": 2.0})


@pytest.mark.parametrize("reply_at, expires", [
    pytest.param(0.5, 30.5, id="a_reply_within_2s_keeps_30s"),
    pytest.param(5.0, 125.0, id="a_reply_after_2s_gives_the_stream_120s"),
])
def test_udp_stream_timer_needs_a_reply_and_activity_after_2s(reply_at, expires):
    nat = Nat(STREAM)
    nat.translated_out(udp(A, 5000, Y1, 80))
    nat.at(reply_at).translated_in(udp(Y1, 80, X1, 5000))
    assert nat.mappings()[0].expires == expires


def test_udp_stream_timer_after_a_single_quick_reply_then_a_keepalive():
    nat = Nat(STREAM)
    nat.translated_out(udp(A, 5000, Y1, 80))
    nat.at(0.1).translated_in(udp(Y1, 80, X1, 5000))
    assert nat.mappings()[0].expires == pytest.approx(30.1)
    nat.at(25).translated_out(udp(A, 5000, Y1, 80))
    assert nat.mappings()[0].expires == 145


def test_udp_unreplied_stays_30s_however_long_it_runs():
    nat = Nat(STREAM)
    for t in (0, 10, 20):
        nat.at(t).translated_out(udp(A, 5000, Y1, 80))
    assert nat.mappings()[0].expires == 50


def test_linux_preset_models_conntrack():
    p = load_preset("linux-masquerade").policy
    assert p.inbound_first is InboundFirst.REMAP
    assert (p.timeouts.udp_stream_after, p.timeouts.tcp_rst, p.hairpin_filtering.value) == (2, 10, "bypass")
