"""Exactness at the edges: static 1:1 hairpins, closed-session reuse, block release,
parity and pairing fallbacks, ICMP about hairpins, live timers, session limits."""

from __future__ import annotations

import pytest


from enginekit import (
    ACK, FIN, RST, SYN, SYNACK, A, B, Nat, X1, Y1, Y2, dst_of, icmp_echo, icmp_error, policy, quoted,
    src_of, tcp, udp, udp_round_trip, valid,
)
from natlab.engine import (
    Dependency, DropReason, Hairpin, Hairpinning, Pooling, PortAssignment, PortForward, PortRange,
    Protocol, Refresh, Side, StaticNat,
)
from natlab.packet import build
from natlab.packet.headers import to_str

S, SX = "192.168.1.10", "203.0.113.50"  # a static 1:1 host and its external address
Y = "198.51.100.9"
STATIC = (StaticNat(S, SX),)


# -- static 1:1 and hairpinning ---------------------------------------------------------
def test_hairpin_to_a_static_external_address_reaches_the_static_host():
    nat = Nat(policy(static=STATIC))
    got = nat.hairpinned(udp(A, 5000, SX, 6000, b"hi"))
    assert dst_of(got) == (S, 6000)
    assert src_of(got) == (X1, 5000)  # A's external endpoint (REQ-9a)
    back = nat.hairpinned(udp(S, 6000, X1, 5000, b"back"))
    assert dst_of(back) == (A, 5000)
    assert src_of(back) == (SX, 6000)


def test_static_host_hairpinning_appears_with_its_static_address():
    nat = Nat(policy(static=STATIC, filtering=Dependency.ENDPOINT_INDEPENDENT))
    xb = udp_round_trip(nat, B, 6000, Y1, 80)
    got = nat.hairpinned(udp(S, 5000, *xb))
    assert src_of(got) == (SX, 5000) and dst_of(got) == (B, 6000)
    assert [m.internal for m in nat.mappings()] == [f"{B}:6000"]  # no dynamic mapping for S
    back = nat.hairpinned(udp(B, 6000, SX, 5000))
    assert dst_of(back) == (S, 5000) and src_of(back) == xb


def test_reply_leaves_from_the_address_the_client_used_forward_or_static():
    fwd = PortForward(Protocol.UDP, 8080, S, 80)
    nat = Nat(policy(static=STATIC, forwards=(fwd,)))
    nat.translated_in(udp(Y, 4000, X1, 8080))
    assert src_of(nat.translated_out(udp(S, 80, Y, 4000))) == (X1, 8080)
    nat.translated_in(udp(Y, 4000, SX, 80))  # the same inside 5-tuple, now via the static address
    assert src_of(nat.translated_out(udp(S, 80, Y, 4000))) == (SX, 80)
    nat.translated_in(udp(Y, 4000, X1, 8080))  # and back through the forward
    assert src_of(nat.translated_out(udp(S, 80, Y, 4000))) == (X1, 8080)


def test_icmp_error_about_static_gre_traffic_reaches_the_static_host():
    nat = Nat(policy(static=STATIC))
    gre = build.ipv4(S, Y, 47, b"\x00\x00\x08\x00" + b"gre-body")
    out = nat.translated_out(gre)
    err = icmp_error(out, src="198.51.100.254", type=3, code=1)
    back = nat.translated_in(err)
    assert dst_of(back)[0] == S
    assert to_str(quoted(back).ip.src) == S


# -- TCP ----------------------------------------------------------------------------------
def _tcp_close(nat: Nat, x, xp, y, yp):
    nat.translated_out(tcp(x, xp, y, yp, flags=SYN))
    nat.translated_in(tcp(y, yp, X1, xp, flags=SYNACK))
    nat.translated_out(tcp(x, xp, y, yp, flags=ACK))
    nat.translated_out(tcp(x, xp, y, yp, flags=FIN | ACK))
    nat.translated_in(tcp(y, yp, X1, xp, flags=FIN | ACK))
    nat.translated_out(tcp(x, xp, y, yp, flags=ACK))


@pytest.mark.parametrize("refresh", ["outbound", "both"])
def test_tcp_new_handshake_on_a_closed_sessions_5_tuple_is_established_again(refresh):
    nat = Nat(policy(refresh=Refresh(refresh)))
    _tcp_close(nat, A, 5000, Y1, 443)
    assert nat.mappings()[0].sessions[0].state == "closing"
    nat.at(10)
    nat.translated_out(tcp(A, 5000, Y1, 443, flags=SYN))
    assert nat.mappings()[0].sessions[0].state == "syn-sent"
    nat.translated_in(tcp(Y1, 443, X1, 5000, flags=SYNACK))
    nat.translated_out(tcp(A, 5000, Y1, 443, flags=ACK))
    s = nat.mappings()[0].sessions[0]
    assert s.state == "established" and s.expires == 10 + 7440


def test_tcp_rst_gets_the_tcp_rst_timer_when_set():
    nat = Nat(policy(timeouts={"tcp_rst": 10.0}))
    nat.translated_out(tcp(A, 5000, Y1, 443, flags=SYN))
    nat.translated_in(tcp(Y1, 443, X1, 5000, flags=SYNACK))
    nat.translated_out(tcp(A, 5000, Y1, 443, flags=ACK))
    nat.at(100).translated_in(tcp(Y1, 443, X1, 5000, flags=RST))
    assert nat.mappings()[0].sessions[0].expires == 110
    assert nat.at(110).mappings() == ()


# -- ports: blocks, parity, pairing -------------------------------------------------------
def test_cgn_port_blocks_go_back_to_the_pool_after_their_mappings_expire():
    pol = policy(port_block=4, port_range=PortRange(1024, 1031), port_assignment=PortAssignment.RANDOM,
                 port_parity=False, timeouts={"udp": 120.0})
    nat = Nat(pol)
    for host in ("192.168.1.2", "192.168.1.3"):
        nat.translated_out(udp(host, 5000, Y1, 80))
    assert nat.dropped(udp("192.168.1.4", 5000, Y1, 80), Side.INSIDE).reason is DropReason.PORT_EXHAUSTED
    nat.at(121).expire()
    assert nat.engine.counters.snapshot()["blocks_released"] == 2
    nat.translated_out(udp("192.168.1.4", 5000, Y1, 80))  # a new subscriber is served


def test_a_full_block_cools_and_is_freed_when_its_last_mapping_ends():
    pol = policy(port_block=2, port_range=PortRange(1024, 1029), port_assignment=PortAssignment.SEQUENTIAL,
                 port_parity=False, timeouts={"udp": 120.0})
    nat = Nat(pol)
    x1 = nat.engine.addresses.pool[0]
    block = nat.engine.port_block_state
    nat.translated_out(udp(A, 5000, Y1, 80))
    assert block(x1, 1024) == "heating"
    nat.at(50).translated_out(udp(A, 5001, Y1, 80))
    nat.translated_out(udp(A, 5002, Y1, 80))  # 1024-1025 is full: a second block
    assert block(x1, 1024) == "cooling"
    nat.at(121).expire()  # the first mapping ends, the second (t=50) lives on
    assert block(x1, 1024) == "cooling"
    nat.at(171).expire()
    assert block(x1, 1024) == "free"


def test_port_parity_is_best_effort_and_falls_back_counted():
    nat = Nat(policy(port_range=PortRange(1024, 1027), port_assignment=PortAssignment.RANDOM))
    ports = [src_of(nat.translated_out(udp(h, 5000, Y1, 80)))[1] for h in
             ("192.168.1.2", "192.168.1.3", "192.168.1.4", "192.168.1.5")]
    assert sorted(ports) == [1024, 1025, 1026, 1027]
    assert nat.engine.counters.snapshot()["parity_fallbacks"] == 2


@pytest.mark.parametrize("seed", range(8))
def test_paired_pooling_pairs_a_new_host_with_an_address_that_has_room(seed):
    pool = ("203.0.113.1", "203.0.113.2")
    nat = Nat(policy(pooling=Pooling.PAIRED, port_range=PortRange(1024, 1031), port_parity=False,
                     port_assignment=PortAssignment.RANDOM), pool=pool, seed=seed)
    for i in range(16):
        nat.translated_out(udp(f"192.168.1.{i + 2}", 5000, Y1, 80))
    assert nat.drops(DropReason.PORT_EXHAUSTED) == 0


# -- ICMP and hairpinning (RFC 5508 REQ-7) ---------------------------------------------------
def test_icmp_error_about_a_hairpinned_packet_is_hairpinned_back_translated():
    nat = Nat(policy(filtering=Dependency.ENDPOINT_INDEPENDENT))
    xb = udp_round_trip(nat, B, 6000, Y1, 80)
    sent = udp(A, 5000, *xb, b"to B")
    seen_by_b = nat.hairpinned(sent)
    err = icmp_error(seen_by_b, src=B, type=3, code=3)
    v = nat.out(err)
    assert type(v) is Hairpin
    valid(v.data)
    assert dst_of(v.data)[0] == A and src_of(v.data)[0] == X1
    q = quoted(v.data)
    assert (to_str(q.ip.src), q.l4.sport, to_str(q.ip.dst), q.l4.dport) == (A, 5000, *xb)


def test_echo_request_to_a_pool_address_is_answered_by_the_nat():
    nat = Nat(policy(hairpinning=Hairpinning.NONE))
    v = nat.out(icmp_echo(A, X1, 99, 3, payload=b"router?"))
    assert type(v) is Hairpin
    reply = valid(v.data)
    assert (dst_of(v.data), src_of(v.data)[0]) == ((A, 99), X1)
    assert reply.l4.type == 0 and reply.payload == b"router?"
    assert nat.engine.counters.snapshot()["answered"] == 1


# -- live timers -------------------------------------------------------------------------------
def test_lowering_a_timer_live_ends_sessions_at_the_new_deadline():
    nat = Nat(policy(timeouts={"udp": 300.0}))
    udp_round_trip(nat, A, 5000, Y1, 80)
    nat.at(10)
    nat.engine.reconfigure(policy(timeouts={"udp": 30.0}), nat.now)
    assert nat.mappings()[0].expires == 40
    nat.at(20).translated_out(udp(A, 5000, Y1, 80))  # a refresh: 50
    assert nat.at(49).engine.process(udp(Y1, 80, X1, 5000), Side.OUTSIDE, 49).__class__.__name__ == "Forward"
    nat.at(80)
    assert nat.dropped(udp(Y1, 80, X1, 5000)).reason is DropReason.NO_MAPPING
    assert nat.mappings() == ()


# -- session limits --------------------------------------------------------------------------
def test_sessions_per_mapping_are_limited_with_counted_drops():
    nat = Nat(policy(filtering=Dependency.ENDPOINT_INDEPENDENT, limits={"max_sessions_per_mapping": 3}))
    nat.translated_out(udp(A, 5000, Y1, 80))
    for port in (1, 2):
        nat.translated_in(udp(Y2, port, X1, 5000))
    assert nat.dropped(udp(Y2, 3, X1, 5000)).reason is DropReason.SESSION_LIMIT
    assert nat.drops(DropReason.SESSION_LIMIT) == 1


def test_unsolicited_flood_keeps_memory_bounded_by_max_sessions():
    nat = Nat(policy(filtering=Dependency.ENDPOINT_INDEPENDENT, limits={"max_sessions": 100}))
    nat.translated_out(udp(A, 5000, Y1, 80))
    for i in range(1000):
        nat.into(udp(f"198.51.{100 + i // 250}.{i % 250 + 1}", 7000, X1, 5000))
    c = nat.engine.counters.snapshot()
    sizes = nat.engine.table_sizes()
    assert c["sessions_active"] == 100 and sizes["sessions"] == 100
    assert c["drops"]["session-limit"] == 901
    assert sizes["timers"] <= 101
