"""Builders (checked against scapy) and verify.problems()."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import ICMP, IP, TCP, UDP, raw

import natlab.packet
from natlab.packet import (
    IPv4Header,
    PacketError,
    TCPFlags,
    build,
    parse_packet,
    problems,
    to_str,
)

A, B = "192.168.1.2", "203.0.113.9"
addresses = st.integers(1, 0xFFFFFFFF)
ports = st.integers(0, 0xFFFF)
payloads = st.binary(max_size=100)


# --- builders against scapy --------------------------------------------------


@settings(max_examples=50)
@given(addresses, ports, addresses, ports, payloads, st.integers(1, 255), st.integers(0, 0xFFFF))
def test_udp_matches_scapy(src, sport, dst, dport, payload, ttl, ident):
    ours = build.udp(src, sport, dst, dport, payload, ttl=ttl, ident=ident)
    theirs = IP(src=to_str(src), dst=to_str(dst), ttl=ttl, id=ident, flags=0) / UDP(
        sport=sport, dport=dport) / payload
    assert ours == raw(theirs)


@settings(max_examples=50)
@given(addresses, ports, addresses, ports, payloads, st.integers(0, 255),
       st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
def test_tcp_matches_scapy(src, sport, dst, dport, payload, flags, seq, ack):
    ours = build.tcp(src, sport, dst, dport, flags=TCPFlags(flags), seq=seq, ack=ack,
                     payload=payload, df=True)
    theirs = IP(src=to_str(src), dst=to_str(dst), ttl=64, id=0, flags="DF") / TCP(
        sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=65535) / payload
    assert ours == raw(theirs)


@settings(max_examples=50)
@given(addresses, addresses, ports, ports, payloads, st.booleans())
def test_icmp_echo_matches_scapy(src, dst, echo_id, seq, payload, reply):
    ours = build.icmp_echo(src, dst, echo_id, seq, reply=reply, payload=payload)
    theirs = IP(src=to_str(src), dst=to_str(dst), ttl=64, id=0, flags=0) / ICMP(
        type=0 if reply else 8, id=echo_id, seq=seq) / payload
    assert ours == raw(theirs)


# --- icmp_error ----------------------------------------------------------------


def test_icmp_error_goes_to_the_original_source_and_quotes_it_whole():
    probe = build.udp(A, 5000, B, 9, b"ping")
    error = parse_packet(build.icmp_error(probe, src=B, type=3, code=3))
    assert (to_str(error.ip.src), to_str(error.ip.dst)) == (B, A)
    assert error.payload == probe


def test_icmp_error_is_at_most_576_bytes():
    big = build.udp(A, 5000, B, 3478, b"\0" * 1472, df=True)
    error = build.icmp_error(big, src="10.0.0.1", type=3, code=4, mtu=1400)
    assert len(error) == 576
    assert parse_packet(error).l4.next_hop_mtu == 1400
    assert problems(error) == []


def test_icmp_error_quotes_at_least_header_plus_8():
    syn = build.tcp(A, 1, B, 80, flags=TCPFlags.SYN)
    error = build.icmp_error(syn, src="10.0.0.1", type=11, code=0, limit=0)
    assert parse_packet(error).payload == syn[:28]
    assert problems(error) == []


def test_icmp_error_drops_bytes_past_total_length():
    probe = build.udp(A, 5000, B, 9, b"ping")
    assert parse_packet(build.icmp_error(probe + b"\0" * 6, src=B, type=3, code=3)).payload == probe


def test_mtu_only_for_frag_needed():
    with pytest.raises(ValueError):
        build.icmp_error(build.udp(A, 1, B, 2), src=B, type=3, code=3, mtu=1400)


# --- tcp_rst_for ---------------------------------------------------------------


def test_rst_for_syn():
    syn = build.tcp(A, 40000, B, 80, flags=TCPFlags.SYN, seq=1000)
    rst = parse_packet(build.tcp_rst_for(syn))
    assert (to_str(rst.ip.src), rst.l4.sport, to_str(rst.ip.dst), rst.l4.dport) == (B, 80, A, 40000)
    assert (rst.l4.flags, rst.l4.seq, rst.l4.ack) == (TCPFlags.RST | TCPFlags.ACK, 0, 1001)
    assert problems(build.tcp_rst_for(syn)) == []


def test_rst_for_segment_with_ack_takes_its_seq_from_ack():
    segment = build.tcp(A, 1, B, 80, flags=TCPFlags.ACK | TCPFlags.PSH, seq=5, ack=77, payload=b"abc")
    rst = parse_packet(build.tcp_rst_for(segment)).l4
    assert (rst.flags, rst.seq) == (TCPFlags.RST, 77)


def test_rst_for_data_without_ack_acks_its_length():
    segment = build.tcp(A, 1, B, 80, flags=TCPFlags.SYN | TCPFlags.FIN, seq=0xFFFFFFFF, payload=b"ab")
    assert parse_packet(build.tcp_rst_for(segment)).l4.ack == 3  # wraps: seq + 2 + SYN + FIN


@pytest.mark.parametrize("packet", [
    build.tcp(A, 1, B, 2, flags=TCPFlags.RST),
    build.udp(A, 1, B, 2),
])
def test_no_rst_for_rst_or_non_tcp(packet):
    with pytest.raises(PacketError):
        build.tcp_rst_for(packet)


# --- fragment ------------------------------------------------------------------


def reassemble(fragments: list[bytes]) -> bytes:
    """A tiny RFC 791 reassembly: the first fragment's header + data by offset."""
    parsed = sorted((IPv4Header.parse(f) + (f,) for f in fragments), key=lambda p: p[0].frag_offset)
    data = bytearray()
    for header, offset, frag in parsed:
        assert header.frag_offset == len(data)
        data += frag[offset : header.total_length]
    first = parsed[0][0]
    return build.ipv4(first.src, first.dst, first.proto, bytes(data), ttl=first.ttl,
                      ident=first.ident, options=first.options, tos=first.tos)


@given(payloads.map(lambda p: p * 20), st.integers(68, 1500))
def test_fragments_reassemble_to_the_original(payload, mtu):
    packet = build.udp(A, 5000, B, 3478, payload, ident=42)
    fragments = build.fragment(packet, mtu)
    assert all(len(f) <= mtu and problems(f) == [] for f in fragments)
    headers = [IPv4Header.parse(f)[0] for f in fragments]
    assert all(h.frag_offset % 8 == 0 and h.ident == 42 for h in headers)
    assert [h.mf for h in headers] == [True] * (len(fragments) - 1) + [False]
    assert reassemble(fragments) == packet


def test_only_copied_options_go_past_the_first_fragment():
    security = b"\x82\x0b" + b"\0" * 9  # copied bit set (RFC 791 Security)
    record_route = b"\x07\x07\x04" + b"\0" * 4  # not copied
    packet = build.udp(A, 1, B, 2, b"z" * 200, options=security + record_route)
    first, *later = build.fragment(packet, 120)
    assert IPv4Header.parse(first)[0].options == security + record_route + b"\0\0"
    assert all(IPv4Header.parse(f)[0].options == security + b"\0" for f in later)


def test_fragmenting_a_fragment_keeps_offsets_and_mf():
    packet = build.ipv4(A, B, 17, b"q" * 400, ident=3, frag_offset=800, mf=True)
    pieces = [IPv4Header.parse(f)[0] for f in build.fragment(packet, 156)]
    assert [(p.frag_offset, p.mf) for p in pieces] == [(800, True), (936, True), (1072, True)]


def test_fragment_leaves_a_fitting_packet_alone():
    packet = build.udp(A, 1, B, 2, b"small", df=True)
    assert build.fragment(packet, 1500) == [packet]


@pytest.mark.parametrize("packet, mtu", [
    (build.udp(A, 1, B, 2, b"\0" * 2000, df=True), 1500),  # DF: answer frag-needed instead
    (build.udp(A, 1, B, 2, b"\0" * 100), 27),  # no room for 8 bytes of data
])
def test_fragment_refuses(packet, mtu):
    with pytest.raises(ValueError):
        build.fragment(packet, mtu)


# --- verify.problems -------------------------------------------------------------


def poke(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("!H", value) + data[at + 2:]


UDP_PKT = build.udp(A, 5000, B, 3478, b"hello")
TCP_PKT = build.tcp(A, 1, B, 80, flags=TCPFlags.SYN)
ECHO = build.icmp_echo(A, B, 1, 2)
QUOTING = build.icmp_error(UDP_PKT, src=B, type=3, code=3)

BROKEN = {
    "ip header checksum": (poke(UDP_PKT, 10, 0x1234), "ipv4 header checksum"),
    "udp checksum": (poke(UDP_PKT, 26, 0x1234), "udp checksum"),
    "udp length": (poke(poke(UDP_PKT, 26, 0), 24, 12), "udp length"),
    "tcp checksum": (poke(TCP_PKT, 36, 0x1234), "tcp checksum"),
    "icmp checksum": (poke(ECHO, 22, 0x1234), "icmp checksum"),
    "quoted ip checksum": (
        build.icmp(B, A, parse_packet(QUOTING).l4, poke(UDP_PKT, 10, 0x1234)),
        "quoted ipv4 header checksum"),
    "quoted udp checksum": (
        build.icmp(B, A, parse_packet(QUOTING).l4, poke(UDP_PKT, 26, 0x1234)), "quoted udp checksum"),
    "quote too short": (build.icmp(B, A, parse_packet(QUOTING).l4, UDP_PKT[:24]), "RFC 792 needs 8"),
    "trailing bytes": (UDP_PKT + b"\0", "total_length"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_problems_finds(name):
    data, expected = BROKEN[name]
    found = problems(data)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize("packet", [
    poke(UDP_PKT, 26, 0),  # UDP: 0 means "no checksum" (RFC 768)
    build.icmp(B, A, parse_packet(QUOTING).l4, poke(UDP_PKT, 26, 0x1234)[:28]),  # quote too short to check UDP
    poke(build.fragment(build.udp(A, 1, B, 2, b"\0" * 100), 68)[0], 26, 0x1234),  # L4 of a fragment
])
def test_problems_skips_what_cannot_be_checked(packet):
    assert problems(packet) == []


def test_problems_flags_non_canonical_ffff():
    # A header whose checksum computes to 0x0000 must not carry 0xFFFF (RFC 1624 section 3).
    for ident in range(0x10000):
        packet = build.ipv4(A, B, 47, b"", ident=ident)
        if packet[10:12] == b"\0\0":
            break
    assert problems(poke(packet, 10, 0xFFFF)) == ["ipv4 header checksum 0xffff, expected 0x0000"]


# --- sans-I/O ------------------------------------------------------------------

FORBIDDEN = {"socket", "time", "subprocess", "threading", "random", "scapy"}


@pytest.mark.parametrize("path", sorted(Path(natlab.packet.__file__).parent.glob("*.py")))
def test_packet_layer_is_sans_io(path):
    tree = ast.parse(path.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & FORBIDDEN
