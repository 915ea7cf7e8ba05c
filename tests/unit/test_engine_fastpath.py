"""Fast-path entries: the engine offers a cache only what it has already decided, exactly."""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given, settings
from hypothesis import strategies as hs

from enginekit import A, ACK, FIN, RST, SYN, SYNACK, X1, Y1, Y2, Nat, dst_of, icmp_echo, policy, src_of, tcp, udp
from natlab.engine import Dependency, Engine, Forward, Refresh, Side, StaticNat
from natlab.engine.fastpath import FastEntry
from natlab.packet import build

Q = 1.0
INSIDE, OUTSIDE = Side.INSIDE, Side.OUTSIDE


def ip(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


def entry_after(nat: Nat, packet: bytes, side: Side, quantum: float = Q):
    verdict = nat.engine.process(packet, side, nat.now)
    assert type(verdict) is Forward, verdict
    return verdict, nat.engine.fast_entry(packet, side, nat.now, quantum)


def rewrite(entry: FastEntry) -> tuple[tuple[str, int], tuple[str, int]]:
    to = str(ipaddress.IPv4Address(entry.new_src)), entry.new_sport
    fro = str(ipaddress.IPv4Address(entry.new_dst)), entry.new_dport
    return to, fro


def test_an_established_udp_flow_gets_an_entry_that_rewrites_as_the_engine_did() -> None:
    nat = Nat()
    out, e = entry_after(nat, udp(A, 5000, Y1, 80, b"x"), INSIDE)
    assert e is not None and e.outbound and e.key == (17, ip(A), 5000, ip(Y1), 80)
    assert rewrite(e) == (src_of(out.data), dst_of(out.data))
    back, r = entry_after(nat, udp(Y1, 80, *src_of(out.data), b"y"), OUTSIDE)
    assert r is not None and not r.outbound and rewrite(r) == (src_of(back.data), dst_of(back.data))
    assert dst_of(back.data) == (A, 5000)


def test_an_entry_lives_one_quantum_at_most_and_never_past_its_session() -> None:
    nat = Nat(policy(timeouts={"udp": 120, "udp_unreplied": 30}))
    _, e = entry_after(nat, udp(A, 5000, Y1, 80), INSIDE, quantum=5.0)
    assert e.expires == 5.0
    _, long = entry_after(nat.at(1.0), udp(A, 5000, Y1, 80), INSIDE, quantum=1000.0)
    assert long.expires == 1.0 + 30  # the session's unreplied deadline


def test_tcp_gets_entries_only_when_established_and_never_for_syn_fin_or_rst() -> None:
    nat = Nat()
    _, syn = entry_after(nat, tcp(A, 4000, Y1, 443, flags=SYN), INSIDE)
    assert syn is None
    ext = nat.external_of(tcp(A, 4000, Y1, 443, flags=ACK))
    _, synack = entry_after(nat, tcp(Y1, 443, *ext, flags=SYNACK), OUTSIDE)
    assert synack is None
    _, data = entry_after(nat, tcp(A, 4000, Y1, 443, flags=ACK, payload=b"hi"), INSIDE)
    assert data is not None and data.proto == 6
    _, reply = entry_after(nat, tcp(Y1, 443, *ext, flags=ACK), OUTSIDE)
    assert reply is not None
    _, fin = entry_after(nat, tcp(A, 4000, Y1, 443, flags=FIN | ACK), INSIDE)
    assert fin is None
    _, after_fin = entry_after(nat, tcp(A, 4000, Y1, 443, flags=ACK), INSIDE)
    assert after_fin is None  # no longer ESTABLISHED
    _, rst = entry_after(nat, tcp(Y1, 443, *ext, flags=RST), OUTSIDE)
    assert rst is None


def test_icmp_echo_entries_match_request_identifier_out_and_reply_identifier_in() -> None:
    nat = Nat()
    out, e = entry_after(nat, icmp_echo(A, Y1, 77, 1), INSIDE)
    assert e.icmp_type == 8 and (e.sport, e.dport) == (77, 0)
    ext_id = src_of(out.data)[1]
    assert e.new_sport == ext_id
    _, r = entry_after(nat, icmp_echo(Y1, X1, ext_id, 1, reply=True), OUTSIDE)
    assert r.icmp_type == 0 and (r.sport, r.dport, r.new_dport) == (0, ext_id, 77)


def test_hairpin_static_and_fragments_are_never_cached() -> None:
    nat = Nat(policy(static=(StaticNat("192.168.1.10", "203.0.113.50"),)))
    ext = nat.external_of(udp(A, 5000, Y1, 80))
    hp = udp("192.168.1.3", 6000, *ext)
    nat.engine.process(hp, INSIDE, nat.now)
    assert nat.engine.fast_entry(hp, INSIDE, nat.now, Q) is None
    _, static = entry_after(nat, udp("192.168.1.10", 7000, Y1, 80), INSIDE)
    assert static is None
    big = udp(A, 5000, Y1, 80, b"z" * 3000)
    frags = build.fragment(big, 1500)
    for f in frags:
        nat.engine.process(f, INSIDE, nat.now)
        assert nat.engine.fast_entry(f, INSIDE, nat.now, Q) is None


def test_an_engine_that_reports_every_refresh_offers_no_entries() -> None:
    eng = Engine(policy(), ["203.0.113.1"], random.Random(7), refresh_events=True)
    pkt = udp(A, 5000, Y1, 80)
    assert type(eng.process(pkt, INSIDE, 0.0)) is Forward
    assert eng.fast_entry(pkt, INSIDE, 0.0, Q) is None


def test_an_unadmitted_remote_gets_no_entry_and_an_admitted_new_remote_gets_one() -> None:
    nat = Nat(policy(filtering=Dependency.ADDRESS_AND_PORT_DEPENDENT))
    ext = nat.external_of(udp(A, 5000, Y1, 80))
    stranger = udp(Y2, 9, *ext)
    assert type(nat.into(stranger)) is not Forward
    assert nat.engine.fast_entry(stranger, OUTSIDE, nat.now, Q) is None
    open_nat = Nat(policy(filtering=Dependency.ENDPOINT_INDEPENDENT))
    ext = open_nat.external_of(udp(A, 5000, Y1, 80))
    _, e = entry_after(open_nat, udp(Y2, 9, *ext), OUTSIDE)
    assert e is not None and (e.new_dst, e.new_dport) == (ip(A), 5000)


def test_folding_counts_cached_packets_and_refreshes_as_of_the_last_one() -> None:
    nat = Nat(policy(timeouts={"udp": 120, "udp_unreplied": 30}))
    _, e = entry_after(nat, udp(A, 5000, Y1, 80), INSIDE)
    before = nat.engine.counters.snapshot()["translated_out"]
    nat.engine.fold_fast(e, 10, last_seen=0.9)
    assert nat.engine.counters.snapshot()["translated_out"] == before + 10
    (view,) = nat.engine.mappings(1.0)
    assert view.expires == 0.9 + 30
    assert view.packets_out == 11


def test_folding_inbound_packets_does_not_refresh_an_outbound_refreshed_mapping() -> None:
    nat = Nat(policy(refresh=Refresh.OUTBOUND, timeouts={"udp": 60, "udp_unreplied": 60}))
    ext = nat.external_of(udp(A, 5000, Y1, 80))
    _, r = entry_after(nat.at(0.5), udp(Y1, 80, *ext), OUTSIDE)
    nat.engine.fold_fast(r, 50, last_seen=50.0)
    (view,) = nat.engine.mappings(50.0)
    assert view.expires == 60.0  # only the outbound packet at t=0 counts
    assert view.packets_in == 51


def test_folding_an_older_last_seen_never_shortens_a_session() -> None:
    nat = Nat(policy(timeouts={"udp": 120, "udp_unreplied": 30}))
    _, e = entry_after(nat.at(10.0), udp(A, 5000, Y1, 80), INSIDE)
    nat.engine.fold_fast(e, 3, last_seen=2.0)
    assert nat.engine.mappings(10.0)[0].expires == 40.0


def test_folding_for_a_session_that_ended_only_counts() -> None:
    nat = Nat(policy(timeouts={"udp": 5, "udp_unreplied": 5}))
    _, e = entry_after(nat, udp(A, 5000, Y1, 80), INSIDE)
    nat.at(100.0).expire()
    nat.engine.fold_fast(e, 4, last_seen=0.5)
    assert nat.engine.mappings(100.0) == ()


@settings(max_examples=60, deadline=None)
@given(gaps=hs.lists(hs.floats(min_value=0.01, max_value=3.0), min_size=1, max_size=60),
       quantum=hs.sampled_from([0.5, 1.0, 2.0]))
def test_a_cache_in_front_keeps_the_mapping_deadline_within_one_quantum(gaps: list[float], quantum: float) -> None:
    """The same outbound flow through the bare engine and through a cache that folds on
    expiry: same mapping, and the deadline differs by at most one quantum."""
    pol = policy(timeouts={"udp": 20, "udp_unreplied": 20})
    bare, cached = Nat(pol), Nat(pol)
    pkt = udp(A, 5000, Y1, 80)
    entry, hits, last, t = None, 0, 0.0, 0.0
    for gap in gaps:
        t += gap
        bare.at(t).translated_out(pkt)
        cached.at(t)
        if entry is not None and t < entry.expires:
            hits, last = hits + 1, t
            continue
        if entry is not None:
            cached.engine.fold_fast(entry, hits, last)
            hits = 0
        verdict = cached.out(pkt)
        if type(verdict) is Forward:
            entry = cached.engine.fast_entry(pkt, INSIDE, t, quantum)
    if entry is not None:
        cached.engine.fold_fast(entry, hits, last)
    b, c = bare.engine.mappings(t), cached.engine.mappings(t)
    assert [v.external for v in b] == [v.external for v in c]
    if b and c:
        assert abs(b[0].expires - c[0].expires) <= quantum + 1e-9
