"""RFC 1071 checksums and RFC 1624 incremental updates."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from natlab.packet import build, problems
from natlab.packet.checksum import (
    apply_delta,
    checksum,
    delta16,
    delta32,
    pseudo_header_sum,
    transport_checksum,
    udp_checksum_field,
)

addresses = st.integers(0, 0xFFFFFFFF)
ports = st.integers(0, 0xFFFF)


def test_rfc1071_example():
    # RFC 1071 section 3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert checksum(data) == (~0xDDF2) & 0xFFFF


def test_odd_length_is_padded_with_zero():
    assert checksum(b"\x12\x34\x56") == checksum(b"\x12\x34\x56\x00")


def test_data_with_its_checksum_sums_to_zero():
    data = bytes.fromhex("4500003c1c46400040060000ac100a63ac100a0c")  # RFC 1071-style IP header
    csum = checksum(data)
    assert checksum(data[:10] + struct.pack("!H", csum) + data[12:]) == 0


def test_rfc1624_example():
    # RFC 1624 section 4: HC=0xDD2F, m=0x5555 -> m'=0x3285 gives HC'=0x0000.
    assert apply_delta(0xDD2F, delta16(0x5555, 0x3285)) == 0x0000


def test_udp_zero_checksum_is_sent_as_ffff():
    assert udp_checksum_field(0) == 0xFFFF
    assert udp_checksum_field(0x1234) == 0x1234


def test_udp_packet_whose_checksum_computes_to_zero_carries_ffff():
    # Choose the payload so the full sum is 0xFFFF: its complement is 0.
    src, dst = 0x0A000001, 0x0A000002
    head = struct.pack("!HHHH", 1, 2, 10, 0)
    partial = 0xFFFF & ~checksum(head, pseudo_header_sum(src, dst, 17, 10))
    filler = struct.pack("!H", (0xFFFF - partial) % 0xFFFF or 0xFFFF)
    assert transport_checksum(src, dst, 17, head + filler) == 0
    packet = build.udp(src, 1, dst, 2, filler)
    assert packet[26:28] == b"\xff\xff"
    assert problems(packet) == []


def _rewrite(packet: bytes, src: int, sport: int) -> bytes:
    """Full recomputation: rebuild the UDP packet with a new source."""
    dst = int.from_bytes(packet[16:20], "big")
    dport = int.from_bytes(packet[22:24], "big")
    return build.udp(src, sport, dst, dport, packet[28:], ident=int.from_bytes(packet[4:6], "big"))


@given(addresses, ports, addresses, ports, st.binary(max_size=64), addresses, ports)
def test_incremental_update_equals_full_recomputation(src, sport, dst, dport, payload, new_src, new_sport):
    packet = build.udp(src, sport, dst, dport, payload)
    ip_csum = int.from_bytes(packet[10:12], "big")
    udp_csum = int.from_bytes(packet[26:28], "big")

    ip_delta = delta32(src, new_src)
    new_ip_csum = apply_delta(ip_csum, ip_delta)
    # The UDP checksum covers the pseudo-header (address) and the port.
    new_udp_csum = udp_checksum_field(apply_delta(udp_csum, ip_delta + delta16(sport, new_sport)))

    full = _rewrite(packet, new_src, new_sport)
    assert new_ip_csum == int.from_bytes(full[10:12], "big")
    assert new_udp_csum == int.from_bytes(full[26:28], "big")


@given(addresses, ports, addresses, ports, st.binary(max_size=64), addresses, ports)
def test_incremental_tcp_update_verifies(src, sport, dst, dport, payload, new_dst, new_dport):
    packet = bytearray(build.tcp(src, sport, dst, dport, flags=0x18, seq=7, payload=payload))
    delta = delta32(dst, new_dst)
    packet[16:20] = new_dst.to_bytes(4, "big")
    packet[22:24] = new_dport.to_bytes(2, "big")
    packet[10:12] = apply_delta(int.from_bytes(packet[10:12], "big"), delta).to_bytes(2, "big")
    tcp_csum = apply_delta(int.from_bytes(packet[36:38], "big"), delta + delta16(dport, new_dport))
    packet[36:38] = tcp_csum.to_bytes(2, "big")
    assert problems(bytes(packet)) == []
