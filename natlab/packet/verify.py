"""Exact checksum and length checks, for tests to run on every rewritten packet.

``problems(data)`` returns one line per problem; an empty list means valid.

Each checksum field is compared with a full recomputation (RFC 1071), not just
"sums to zero", so a non-canonical 0xFFFF where 0x0000 belongs (RFC 1624's
pitfall) is caught too. UDP's rules (RFC 768): 0 means "no checksum" and is
fine; a computed 0 must be sent as 0xFFFF.

What can be checked depends on the packet:

* always: the IPv4 header (RFC 791) and lengths;
* unfragmented only: the TCP/UDP/ICMP checksum (a fragment lacks the rest);
* ICMP errors (RFC 792): the quoted IPv4 header's checksum, that the quote has
  at least header + 8 bytes, and the quoted datagram's transport checksum only
  when the quote holds the whole (unfragmented) datagram.
"""

from __future__ import annotations

from natlab.packet.checksum import checksum, transport_checksum, udp_checksum_field
from natlab.packet.headers import (
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    ICMPHeader,
    IPv4Header,
    PacketError,
    TCPHeader,
    UDPHeader,
)


def problems(data: bytes) -> list[str]:
    """Every checksum/length problem of an IPv4 packet; [] when it is valid."""
    data = bytes(data)
    try:
        ip, offset = IPv4Header.parse(data)
    except PacketError as exc:
        return [f"malformed: {exc}"]
    found = []
    if len(data) > ip.total_length:
        found.append(f"ipv4 total_length {ip.total_length} but {len(data)} bytes")
    found += _ip_header_problems(ip, data[:offset], "")
    if not ip.is_fragment:
        found += _l4_problems(ip, data[offset : ip.total_length], "")
    return found


def _field(name: str, got: int, want: int) -> str:
    return f"{name} checksum 0x{got:04x}, expected 0x{want:04x}"


def _ip_header_problems(ip: IPv4Header, header: bytes, where: str) -> list[str]:
    want = checksum(header[:10] + b"\x00\x00" + header[12:])
    return [] if ip.checksum == want else [_field(f"{where}ipv4 header", ip.checksum, want)]


def _l4_problems(ip: IPv4Header, body: bytes, where: str) -> list[str]:
    """Problems of a complete transport segment/message ``body``."""
    checks = {PROTO_UDP: _udp_problems, PROTO_TCP: _tcp_problems, PROTO_ICMP: _icmp_problems}
    check = checks.get(ip.proto)
    return check(ip, body, where) if check else []


def _udp_problems(ip: IPv4Header, body: bytes, where: str) -> list[str]:
    try:
        udp, _ = UDPHeader.parse(body)
    except PacketError as exc:
        return [f"{where}udp: {exc}"]
    if udp.length != len(body):
        return [f"{where}udp length {udp.length}, ip payload is {len(body)} bytes"]
    if udp.checksum == 0:
        return []
    zeroed = body[:6] + b"\x00\x00" + body[8:]
    want = udp_checksum_field(transport_checksum(ip.src, ip.dst, PROTO_UDP, zeroed))
    return [] if udp.checksum == want else [_field(f"{where}udp", udp.checksum, want)]


def _tcp_problems(ip: IPv4Header, body: bytes, where: str) -> list[str]:
    try:
        tcp, _ = TCPHeader.parse(body)
    except PacketError as exc:
        return [f"{where}tcp: {exc}"]
    zeroed = body[:16] + b"\x00\x00" + body[18:]
    want = transport_checksum(ip.src, ip.dst, PROTO_TCP, zeroed)
    return [] if tcp.checksum == want else [_field(f"{where}tcp", tcp.checksum, want)]


def _icmp_problems(ip: IPv4Header, body: bytes, where: str) -> list[str]:
    try:
        icmp, _ = ICMPHeader.parse(body)
    except PacketError as exc:
        return [f"{where}icmp: {exc}"]
    want = checksum(body[:2] + b"\x00\x00" + body[4:])
    found = [] if icmp.checksum == want else [_field(f"{where}icmp", icmp.checksum, want)]
    if icmp.is_error:
        found += _quote_problems(body[8:], where + "quoted ")
    return found


def _quote_problems(quote: bytes, where: str) -> list[str]:
    """Problems of the datagram an ICMP error quotes (RFC 792, RFC 1812 4.3.2.3)."""
    try:
        inner, offset = IPv4Header.parse(quote, quoted=True)
    except PacketError as exc:
        return [f"{where}datagram malformed: {exc}"]
    found = _ip_header_problems(inner, quote[:offset], where)
    if len(quote) < min(inner.total_length, offset + 8):
        found.append(f"{where}datagram has {len(quote) - offset} data bytes, RFC 792 needs 8")
    if len(quote) > inner.total_length:
        found.append(f"{where}datagram has {len(quote) - inner.total_length} bytes past its total_length")
    if len(quote) >= inner.total_length and not inner.is_fragment:
        found += _l4_problems(inner, quote[offset : inner.total_length], where)
    return found
