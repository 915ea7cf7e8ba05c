"""Frames the DPDK gateway reads and writes itself, as pure functions over bytes.

With the kernel out of the path the gateway is the router: it parses Ethernet
and ARP (RFC 826), checks an IPv4 header as a router must before forwarding it
(RFC 1812 5.2.2: version, length, header checksum), decrements the TTL with an
incremental checksum update (RFC 1812 5.3.1, RFC 1624), and builds the ICMP
messages a router sends (echo replies, time exceeded, frag-needed, unreachable)
with :mod:`natlab.packet.build`. Nothing here does I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from natlab.packet.checksum import checksum

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ETH_HEADER = 14

_ARP = struct.Struct("!HHBBH6s4s6s4s")


@dataclass(frozen=True)
class Arp:
    """An ARP packet for IPv4 over Ethernet (RFC 826)."""

    op: int
    """1 request, 2 reply."""
    sender_mac: bytes
    sender_ip: int
    target_mac: bytes
    target_ip: int


def ethertype(frame: bytes) -> int:
    return (frame[12] << 8) | frame[13] if len(frame) >= ETH_HEADER else -1


def eth_header(dst: bytes, src: bytes, kind: int) -> bytes:
    return dst + src + struct.pack("!H", kind)


def parse_arp(frame: bytes) -> Optional[Arp]:
    """The ARP packet in ``frame``, or None when it is not IPv4-over-Ethernet ARP."""
    if len(frame) < ETH_HEADER + _ARP.size:
        return None
    htype, ptype, hlen, plen, op, smac, sip, tmac, tip = _ARP.unpack_from(frame, ETH_HEADER)
    if (htype, ptype, hlen, plen) != (1, ETH_IPV4, 6, 4) or op not in (1, 2):
        return None
    return Arp(op, smac, int.from_bytes(sip, "big"), tmac, int.from_bytes(tip, "big"))


def arp_frame(op: int, src_mac: bytes, src_ip: int, dst_mac: bytes, dst_ip: int) -> bytes:
    """A request (to broadcast, target MAC zero) or a reply (to ``dst_mac``)."""
    eth_dst = BROADCAST if op == 1 else dst_mac
    target_mac = ZERO_MAC if op == 1 else dst_mac
    body = _ARP.pack(1, ETH_IPV4, 6, 4, op, src_mac, src_ip.to_bytes(4, "big"), target_mac,
                     dst_ip.to_bytes(4, "big"))
    return eth_header(eth_dst, src_mac, ETH_ARP) + body + b"\x00" * 18  # padded to 60 bytes


def ipv4_problem(packet: bytes) -> Optional[str]:
    """Why a router must drop this IPv4 packet before looking at it (None: it may go on).

    RFC 1812 5.2.2: at least 20 bytes, version 4, header length >= 20 and within
    the total length, total length within what arrived, a valid header checksum.
    """
    if len(packet) < 20:
        return "truncated"
    vihl = packet[0]
    ihl = (vihl & 15) * 4
    total = (packet[2] << 8) | packet[3]
    if vihl >> 4 != 4:
        return "bad-version"
    if ihl < 20:
        return "bad-ihl"
    if total < ihl or total > len(packet) or len(packet) < ihl:
        return "bad-length"
    if checksum(packet[:ihl]) != 0:
        return "bad-checksum"
    return None


def ttl_decremented(packet: bytes | bytearray) -> bytearray:
    """The packet with TTL - 1 and its header checksum updated (RFC 1624 eqn. 3)."""
    buf = bytearray(packet)
    buf[8] -= 1
    csum = (buf[10] << 8) | buf[11]
    total = (~csum & 0xFFFF) + 0xFEFF  # the word (TTL, proto) fell by 0x0100
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    new = ~total & 0xFFFF
    buf[10], buf[11] = new >> 8, new & 0xFF
    return buf


def dst_of(packet: bytes | bytearray) -> int:
    return int.from_bytes(packet[16:20], "big")


def src_of(packet: bytes | bytearray) -> int:
    return int.from_bytes(packet[12:16], "big")


def dont_fragment(packet: bytes | bytearray) -> bool:
    return bool(packet[6] & 0x40)


def echo_reply(packet: bytes) -> Optional[bytes]:
    """The answer to an ICMP echo request addressed to us (RFC 792, RFC 1122 3.2.2.6), or None."""
    from natlab.packet.build import icmp

    from natlab.packet.headers import ICMPHeader

    ihl = (packet[0] & 15) * 4
    total = (packet[2] << 8) | packet[3]
    if packet[9] != 1 or total < ihl + 8 or packet[ihl] != 8 or packet[ihl + 1] != 0:
        return None
    if packet[6] & 0x20 or (packet[6] & 0x1F) or packet[7]:
        return None  # a fragment: not reassembled here
    body = bytes(packet[ihl:total])
    if checksum(body) != 0:
        return None
    rest = int.from_bytes(body[4:8], "big")
    return icmp(dst_of(packet), src_of(packet), ICMPHeader(0, 0, 0, rest), body[8:])


def icmp_error_for(original: bytes, src: int, type_: int, code: int, mtu: int = 0) -> Optional[bytes]:
    """An ICMP error from ``src`` about ``original`` (RFC 1812 4.3.2.3), or None when none
    may be sent: never about an ICMP error, a non-first fragment, or a broadcast/multicast
    or zero source (RFC 1812 4.3.2.7)."""
    from natlab.packet.build import icmp_error

    ihl = (original[0] & 15) * 4
    if (original[6] & 0x1F) or original[7]:
        return None
    if original[9] == 1 and len(original) > ihl and original[ihl] not in (0, 8, 13, 14, 15, 16, 17, 18):
        return None
    source = src_of(original)
    if source == 0 or source >> 28 >= 14 or source == 0xFFFFFFFF:
        return None
    try:
        return icmp_error(bytes(original), src=src, type=type_, code=code, mtu=mtu)
    except ValueError:
        return None
