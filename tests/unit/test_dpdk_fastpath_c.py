"""The DPDK datapath's C fast path, on frames in memory: it rewrites exactly as the engine did.

No EAL and no root: the session table and the per-packet code run on plain buffers
(``nl_fast_frame``). Each test asks the real engine for a packet's verdict and its
fast-path entry, installs the entry in C, and compares what C makes of the next
packet with what the engine makes of it (plus the router's TTL decrement).
"""

from __future__ import annotations

import ipaddress

import pytest

from enginekit import A, ACK, FIN, RST, SYN, SYNACK, Y1, Nat, icmp_echo, src_of, tcp, udp
from natlab.engine import Forward, Side
from natlab.packet import problems

from dpdk_kit import require_dpdk_binding  # noqa: E402

require_dpdk_binding()

from natlab.datapaths.dpdk.frames import ttl_decremented  # noqa: E402
from natlab.datapaths.dpdk.ports import Dataplane  # noqa: E402

MAC_IN = bytes.fromhex("020000000001")
MAC_OUT = bytes.fromhex("020000000002")
PEER = bytes.fromhex("02000000aaaa")
ETH_OUT = PEER + MAC_OUT
MTU = 1500


def frame(packet: bytes, to: bytes = MAC_IN) -> bytearray:
    return bytearray(to + PEER + b"\x08\x00" + packet)


@pytest.fixture
def table():
    dp = Dataplane([], [], file_prefix="unit", capacity=8)
    dp.open_table()
    yield dp
    dp.close()


def install(dp: Dataplane, entry, out_port: int = 1, mtu: int = MTU, offset: float = 0.0) -> bool:
    return dp.install(side=0 if entry.side is Side.INSIDE else 1, proto=entry.proto, src=entry.src,
                      sport=entry.sport, dst=entry.dst, dport=entry.dport, new_src=entry.new_src,
                      new_sport=entry.new_sport, new_dst=entry.new_dst, new_dport=entry.new_dport,
                      expires=entry.expires - offset, out_port=out_port, mtu=mtu, eth=ETH_OUT)


def engine_and_c_agree(nat: Nat, dp: Dataplane, first: bytes, second: bytes, side: Side) -> bytes:
    verdict = nat.engine.process(first, side, nat.now)
    assert type(verdict) is Forward
    entry = nat.engine.fast_entry(first, side, nat.now, 1.0)
    assert entry is not None
    assert install(dp, entry)
    mac = MAC_IN if side is Side.INSIDE else MAC_OUT
    buf = frame(second, mac)
    out, why = dp.fast_frame(0 if side is Side.INSIDE else 1, mac, buf, nat.now)
    assert (out, why) == (1, "hit")
    expected = nat.engine.process(second, side, nat.now)
    assert type(expected) is Forward
    assert bytes(buf[:12]) == ETH_OUT
    assert bytes(buf[14:]) == bytes(ttl_decremented(expected.data))
    assert problems(bytes(buf[14:])) == []
    return bytes(buf[14:])


def test_udp_out_and_back_rewrite_as_the_engine_does(table) -> None:
    nat = Nat()
    out = engine_and_c_agree(nat, table, udp(A, 5000, Y1, 80, b"a"), udp(A, 5000, Y1, 80, b"bb"), Side.INSIDE)
    ext = src_of(out)
    engine_and_c_agree(nat, table, udp(Y1, 80, *ext, b"c"), udp(Y1, 80, *ext, b"dd"), Side.OUTSIDE)


def test_udp_without_a_checksum_keeps_none(table) -> None:
    nat = Nat()
    first = udp(A, 5001, Y1, 80, b"a")
    nat.engine.process(first, Side.INSIDE, 0.0)
    install(table, nat.engine.fast_entry(first, Side.INSIDE, 0.0, 1.0))
    second = bytearray(udp(A, 5001, Y1, 80, b"b"))
    second[26:28] = b"\x00\x00"
    buf = frame(bytes(second))
    assert table.fast_frame(0, MAC_IN, buf, 0.0) == (1, "hit")
    assert buf[14 + 26:14 + 28] == b"\x00\x00"


def test_tcp_established_segments_hit_and_syn_fin_rst_miss(table) -> None:
    nat = Nat()
    nat.engine.process(tcp(A, 4000, Y1, 443, flags=SYN), Side.INSIDE, 0.0)
    ext = src_of(nat.translated_out(tcp(A, 4000, Y1, 443, flags=SYN)))
    nat.engine.process(tcp(Y1, 443, *ext, flags=SYNACK), Side.OUTSIDE, 0.0)
    engine_and_c_agree(nat, table, tcp(A, 4000, Y1, 443, flags=ACK, seq=1),
                       tcp(A, 4000, Y1, 443, flags=ACK, seq=2, payload=b"x" * 100), Side.INSIDE)
    for flags in (SYN, FIN | ACK, RST):
        buf = frame(tcp(A, 4000, Y1, 443, flags=flags))
        assert table.fast_frame(0, MAC_IN, buf, 0.0) == (-1, "other")


def test_icmp_echo_request_and_reply_rewrite_the_identifier(table) -> None:
    nat = Nat()
    out = engine_and_c_agree(nat, table, icmp_echo(A, Y1, 7, 1), icmp_echo(A, Y1, 7, 2, payload=b"p"),
                             Side.INSIDE)
    ext_addr = str(ipaddress.IPv4Address(out[12:16]))
    ident = int.from_bytes(out[24:26], "big")
    engine_and_c_agree(nat, table, icmp_echo(Y1, ext_addr, ident, 1, reply=True),
                       icmp_echo(Y1, ext_addr, ident, 2, reply=True), Side.OUTSIDE)


def test_what_needs_the_router_or_the_engine_misses(table) -> None:
    nat = Nat()
    first = udp(A, 5000, Y1, 80, b"a")
    nat.engine.process(first, Side.INSIDE, 0.0)
    install(table, nat.engine.fast_entry(first, Side.INSIDE, 0.0, 1.0), mtu=100)
    cases = {
        "ttl 1": udp(A, 5000, Y1, 80, b"a", ttl=1),
        "fragment": udp(A, 5000, Y1, 80, b"a", mf=True),
        "over the mtu": udp(A, 5000, Y1, 80, b"a" * 200),
        "options": udp(A, 5000, Y1, 80, b"a", options=b"\x01\x01\x01\x01"),
    }
    for name, packet in cases.items():
        assert table.fast_frame(0, MAC_IN, frame(packet), 0.0)[0] == -1, name
    bad = bytearray(udp(A, 5000, Y1, 80, b"a"))
    bad[10] ^= 0xFF
    assert table.fast_frame(0, MAC_IN, frame(bytes(bad)), 0.0)[0] == -1
    assert table.fast_frame(0, MAC_IN, frame(first, to=PEER), 0.0)[0] == -1
    assert table.fast_frame(0, MAC_IN, frame(first), 0.0) == (1, "hit")
    assert table.fast_frame(0, MAC_IN, frame(first), 1.0) == (-1, "expired")
    assert table.fast_frame(0, MAC_IN, frame(udp(A, 5999, Y1, 80)), 0.0) == (-1, "absent")
    for cut in range(0, 14 + 28):
        assert table.fast_frame(0, MAC_IN, frame(first)[:cut], 0.0)[0] == -1


def test_counters_come_back_once_and_removal_returns_the_rest(table) -> None:
    nat = Nat()
    first = udp(A, 5000, Y1, 80, b"a")
    nat.engine.process(first, Side.INSIDE, 0.0)
    entry = nat.engine.fast_entry(first, Side.INSIDE, 0.0, 1.0)
    install(table, entry)
    for t in (0.1, 0.2, 0.3):
        table.fast_frame(0, MAC_IN, frame(first), t)
    (seen,) = list(table.collect())
    assert (seen.packets, seen.nbytes, seen.last_seen) == (3, 3 * len(first), 0.3)
    assert list(table.collect()) == []
    table.fast_frame(0, MAC_IN, frame(first), 0.4)
    gone = table.remove((0, 17, entry.src, entry.sport, entry.dst, entry.dport))
    assert gone is not None and gone.packets == 1
    assert table.stats()["entries"] == 0 and list(table.collect()) == []


def test_a_full_table_refuses_and_counts_and_removal_frees_room(table) -> None:
    nat = Nat()
    entries = []
    for port in range(5000, 5010):
        packet = udp(A, port, Y1, 80)
        nat.engine.process(packet, Side.INSIDE, 0.0)
        entries.append(nat.engine.fast_entry(packet, Side.INSIDE, 0.0, 1.0))
    results = [install(table, e) for e in entries]
    assert results == [True] * 8 + [False] * 2
    assert table.stats()["table_full"] == 2
    for e in entries[:4]:
        assert table.remove((0, 17, e.src, e.sport, e.dst, e.dport)) is not None
    assert all(install(table, e) for e in entries[8:])
    for e in entries[4:]:  # every survivor still found after the backward shifts
        buf = frame(udp(A, e.sport, Y1, 80))
        assert table.fast_frame(0, MAC_IN, buf, 0.0) == (1, "hit")
    table.clear()
    assert table.stats()["entries"] == 0
    assert table.fast_frame(0, MAC_IN, frame(udp(A, 5009, Y1, 80)), 0.0) == (-1, "absent")

