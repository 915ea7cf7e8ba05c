"""Linux MASQUERADE's inbound-first remapping for TCP (``inbound_first: remap``): an
unreplied inbound SYN's conntrack entry makes the later outbound SYN to that remote clash
and leave from a new port (RFC 5382 REQ-1 broken for that remote only)."""

from __future__ import annotations

import pytest

from enginekit import ACK, RST, SYN, SYNACK, A, Nat, X1, Y1, Y2, policy, src_of, tcp, udp
from natlab.behaviours.presets import load_preset
from natlab.engine import Dependency, DropReason, InboundFirst, Refresh

APDF = Dependency.ADDRESS_AND_PORT_DEPENDENT
REMAP = policy(filtering=APDF, inbound_first=InboundFirst.REMAP, refresh=Refresh.BOTH,
               timeouts={"tcp_transitory": 120.0})


def _connect(nat: Nat, x, xp, y, yp) -> tuple[str, int]:
    """A handshake from inside; the external endpoint the remote saw."""
    seen = src_of(nat.translated_out(tcp(x, xp, y, yp, flags=SYN)))
    nat.translated_in(tcp(y, yp, *seen, flags=SYNACK))
    nat.translated_out(tcp(x, xp, y, yp, flags=ACK))
    return seen


def test_inbound_first_syn_makes_the_later_outbound_syn_to_that_remote_leave_from_a_new_port():
    nat = Nat(REMAP)
    assert _connect(nat, A, 5000, Y1, 443) == (X1, 5000)
    assert nat.dropped(tcp(Y2, 7000, X1, 5000, flags=SYN)).reason is DropReason.FILTERED
    to_peer = _connect(nat, A, 5000, Y2, 7000)  # the handshake completes on the new port
    assert to_peer[0] == X1 and to_peer[1] != 5000
    assert _connect(nat, A, 5000, "198.51.100.77", 80) == (X1, 5000)  # others still see x
    rows = {(m.internal, m.external, m.remote) for m in nat.mappings()}
    assert (f"{A}:5000", f"{X1}:{to_peer[1]}", f"{Y2}:7000") in rows


def test_inbound_first_syn_before_any_mapping_keeps_x_for_other_remotes():
    nat = Nat(REMAP)
    assert nat.dropped(tcp(Y2, 7000, X1, 5000, flags=SYN)).reason is DropReason.NO_MAPPING
    assert src_of(nat.translated_out(tcp(A, 5000, Y2, 7000, flags=SYN)))[1] != 5000
    assert src_of(nat.translated_out(tcp(A, 5000, Y1, 80, flags=SYN))) == (X1, 5000)


@pytest.mark.parametrize("flags", [ACK, SYNACK, RST, SYN | RST], ids=["ack", "syn-ack", "rst", "syn-rst"])
def test_inbound_first_segments_other_than_a_bare_syn_leave_no_entry(flags):
    nat = Nat(REMAP)
    _connect(nat, A, 5000, Y1, 443)
    nat.dropped(tcp(Y2, 7000, X1, 5000, flags=flags))
    assert src_of(nat.translated_out(tcp(A, 5000, Y2, 7000, flags=SYN))) == (X1, 5000)
    assert nat.engine.table_sizes()["claims"] == 0


def test_inbound_first_syn_entry_lapses_after_the_transitory_timer():
    nat = Nat(REMAP)
    _connect(nat, A, 5000, Y1, 443)
    nat.dropped(tcp(Y2, 7000, X1, 5000, flags=SYN))
    nat.at(121)
    assert src_of(nat.translated_out(tcp(A, 5000, Y2, 7000, flags=SYN))) == (X1, 5000)


def test_inbound_first_forget_keeps_the_tcp_port_for_a_remote_whose_syn_came_first():
    nat = Nat(policy(filtering=APDF, inbound_first=InboundFirst.FORGET))
    _connect(nat, A, 5000, Y1, 443)
    nat.dropped(tcp(Y2, 7000, X1, 5000, flags=SYN))
    assert src_of(nat.translated_out(tcp(A, 5000, Y2, 7000, flags=SYN))) == (X1, 5000)


def test_switching_inbound_first_to_forget_live_drops_the_unreplied_entries():
    nat = Nat(REMAP)
    _connect(nat, A, 5000, Y1, 443)
    nat.dropped(tcp(Y2, 7000, X1, 5000, flags=SYN))
    nat.engine.reconfigure(policy(filtering=APDF, refresh=Refresh.BOTH), nat.now)
    assert nat.engine.table_sizes()["claims"] == 0
    assert src_of(nat.translated_out(tcp(A, 5000, Y2, 7000, flags=SYN))) == (X1, 5000)


def test_an_unreplied_syn_entry_and_a_udp_one_are_apart():
    nat = Nat(REMAP)
    nat.dropped(tcp(Y2, 7000, X1, 5000, flags=SYN))
    assert src_of(nat.translated_out(udp(A, 5000, Y2, 7000))) == (X1, 5000)  # UDP: no clash


def test_linux_preset_remaps_tcp_after_an_inbound_first_syn():
    nat = Nat(load_preset("linux-masquerade").policy)
    _connect(nat, A, 5000, Y1, 443)
    nat.dropped(tcp(Y2, 7000, X1, 5000, flags=SYN))
    assert src_of(nat.translated_out(tcp(A, 5000, Y2, 7000, flags=SYN)))[1] != 5000
