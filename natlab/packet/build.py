"""Build correct IPv4 packets from values (no scapy), for tests and backends.

Every builder returns the whole packet as ``bytes`` with correct lengths and
checksums. Addresses may be str or int. IP-level keywords (``ttl``, ``ident``,
``df``, ``mf``, ``frag_offset`` in bytes, ``options``, ``tos``) are the same
for every builder; see :class:`IPFields`.

Invalid arguments raise ``ValueError``; a packet argument that cannot be
parsed raises :class:`~natlab.packet.headers.PacketError`.
"""

from __future__ import annotations

import struct
from typing import TypedDict, Unpack

from natlab.packet.checksum import checksum, transport_checksum, udp_checksum_field
from natlab.packet.headers import (
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    AddressLike,
    ICMPHeader,
    IPFlags,
    IPv4Header,
    PacketError,
    TCPFlags,
    TCPHeader,
    UDPHeader,
    to_int,
)

ICMP_QUOTE_LIMIT = 576
"""An ICMP error is at most 576 bytes, quoting as much of the original as fits
(RFC 1812 4.3.2.3; Linux does the same). RFC 792's minimum is header + 8."""


class IPFields(TypedDict, total=False):
    """IP-level keywords every builder accepts."""

    ttl: int
    ident: int
    df: bool
    mf: bool
    frag_offset: int
    options: bytes
    tos: int


def _pad4(options: bytes) -> bytes:
    """Pad options with zero bytes (End of Option List) to 32 bits (RFC 791)."""
    return options + b"\x00" * (-len(options) % 4)


def ipv4(
    src: AddressLike,
    dst: AddressLike,
    proto: int,
    payload: bytes,
    *,
    ttl: int = 64,
    ident: int = 0,
    df: bool = False,
    mf: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
    tos: int = 0,
) -> bytes:
    """An IPv4 packet around ``payload`` (RFC 791); options are zero-padded."""
    options = _pad4(options)
    if len(options) > 40:
        raise ValueError(f"IPv4 options are at most 40 bytes: got {len(options)}")
    total = 20 + len(options) + len(payload)
    if total > 0xFFFF:
        raise ValueError(f"IPv4 packet too long: got {total} bytes")
    flags = (IPFlags.DF if df else IPFlags.NONE) | (IPFlags.MF if mf else IPFlags.NONE)
    header = IPv4Header(
        src=to_int(src), dst=to_int(dst), proto=proto, total_length=total, ttl=ttl,
        ident=ident, flags=flags, frag_offset=frag_offset, tos=tos, options=options,
    )
    return header.emit() + bytes(payload)


def udp(
    src: AddressLike, sport: int, dst: AddressLike, dport: int, payload: bytes = b"",
    **ip_kw: Unpack[IPFields],
) -> bytes:
    """A UDP datagram (RFC 768) with its checksum (a computed 0 is sent as 0xFFFF)."""
    src, dst = to_int(src), to_int(dst)
    segment = UDPHeader(sport, dport, 8 + len(payload)).emit() + bytes(payload)
    csum = udp_checksum_field(transport_checksum(src, dst, PROTO_UDP, segment))
    return ipv4(src, dst, PROTO_UDP, _set16(segment, 6, csum), **ip_kw)


def tcp(
    src: AddressLike, sport: int, dst: AddressLike, dport: int, *,
    flags: TCPFlags, seq: int = 0, ack: int = 0, window: int = 65535,
    payload: bytes = b"", tcp_options: bytes = b"", urgent: int = 0,
    **ip_kw: Unpack[IPFields],
) -> bytes:
    """A TCP segment (RFC 793) with its checksum; ``tcp_options`` are zero-padded."""
    src, dst = to_int(src), to_int(dst)
    header = TCPHeader(
        sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, TCPFlags(flags), window,
        urgent=urgent, options=_pad4(tcp_options),
    )
    segment = header.emit() + bytes(payload)
    csum = transport_checksum(src, dst, PROTO_TCP, segment)
    return ipv4(src, dst, PROTO_TCP, _set16(segment, 16, csum), **ip_kw)


def icmp(
    src: AddressLike, dst: AddressLike, header: ICMPHeader, body: bytes = b"",
    **ip_kw: Unpack[IPFields],
) -> bytes:
    """Any ICMP message (RFC 792); the checksum covers header and body."""
    message = ICMPHeader(header.type, header.code, 0, header.rest).emit() + bytes(body)
    return ipv4(src, dst, PROTO_ICMP, _set16(message, 2, checksum(message)), **ip_kw)


def icmp_echo(
    src: AddressLike, dst: AddressLike, echo_id: int, seq: int, /, *,
    reply: bool = False, payload: bytes = b"", **ip_kw: Unpack[IPFields],
) -> bytes:
    """An ICMP echo request (type 8) or, with ``reply``, echo reply (type 0).

    ``echo_id`` and ``seq`` are positional so that ``ident=`` stays the IP
    identification, as for every builder.
    """
    return icmp(src, dst, ICMPHeader.echo(echo_id, seq, reply=reply), payload, **ip_kw)


def icmp_error(
    original: bytes, *, src: AddressLike, type: int, code: int, mtu: int = 0,
    limit: int = ICMP_QUOTE_LIMIT, **ip_kw: Unpack[IPFields],
) -> bytes:
    """An ICMP error sent by ``src`` about ``original``, to the original's source.

    Quotes the original's IP header and as much of its data as keeps the error
    within ``limit`` bytes (RFC 1812 4.3.2.3), never less than RFC 792's
    header + 8 bytes. ``mtu`` is the next-hop MTU of a frag-needed (type 3
    code 4, RFC 1191).
    """
    ip, offset = IPv4Header.parse(original)
    if mtu and (type, code) != (3, 4):
        raise ValueError(f"mtu is only for frag-needed (type 3 code 4): got type {type} code {code}")
    header_len = 20 + len(_pad4(ip_kw.get("options", b""))) + 8
    keep = max(limit - header_len, offset + 8)
    quote = bytes(original[: min(ip.total_length, keep)])
    return icmp(src, ip.src, ICMPHeader(type, code, 0, mtu & 0xFFFF), quote, **ip_kw)


def tcp_rst_for(segment: bytes, **ip_kw: Unpack[IPFields]) -> bytes:
    """The RST an endpoint answers to ``segment`` (e.g. a SYN to a closed port).

    RFC 793 3.4: if the segment has ACK, the RST takes seq=SEG.ACK; otherwise
    seq=0, ACK set and ack=SEG.SEQ+SEG.LEN (SYN and FIN count as one each).
    """
    ip, offset = IPv4Header.parse(segment)
    if ip.proto != PROTO_TCP or ip.is_fragment:
        raise PacketError("not an unfragmented TCP segment", got=f"proto {ip.proto}")
    body = bytes(segment[offset : ip.total_length])
    seg, data_off = TCPHeader.parse(body)
    if seg.flags & TCPFlags.RST:
        raise PacketError("never answer a RST with a RST (RFC 793 3.4)")
    reply = dict(src=ip.dst, sport=seg.dport, dst=ip.src, dport=seg.sport, window=0)
    if seg.flags & TCPFlags.ACK:
        return tcp(**reply, flags=TCPFlags.RST, seq=seg.ack, **ip_kw)
    seg_len = len(body) - data_off + bool(seg.flags & TCPFlags.SYN) + bool(seg.flags & TCPFlags.FIN)
    return tcp(**reply, flags=TCPFlags.RST | TCPFlags.ACK, ack=seg.seq + seg_len, **ip_kw)


def copied_options(options: bytes) -> bytes:
    """The options a non-first fragment carries: those with the copied bit
    (0x80) set (RFC 791 3.1), zero-padded."""
    kept, i = b"", 0
    while i < len(options):
        kind = options[i]
        if kind == 0:  # End of Option List
            break
        if kind == 1:  # No Operation
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2 or i + options[i + 1] > len(options):
            raise PacketError("malformed IPv4 option", got=options[i:].hex())
        length = options[i + 1]
        if kind & 0x80:
            kept += options[i : i + length]
        i += length
    return _pad4(kept)


def fragment(packet: bytes, mtu: int) -> list[bytes]:
    """Split an IPv4 packet into fragments of at most ``mtu`` bytes (RFC 791 3.2).

    Data is cut on 8-byte boundaries; every fragment but the last has MF; only
    copied options go past the first fragment. Fragmenting a fragment works
    (offsets add up, the last piece keeps the original MF). A packet that fits
    is returned as is; a DF packet that does not fit raises ``ValueError``.
    """
    ip, offset = IPv4Header.parse(packet)
    if ip.total_length <= mtu:
        return [bytes(packet[: ip.total_length])]
    if ip.df:
        raise ValueError(
            f"DF is set and the packet ({ip.total_length} bytes) exceeds mtu {mtu}"
            " (hint: answer with icmp_error(type=3, code=4, mtu=...))"
        )
    data = bytes(packet[offset : ip.total_length])
    later_options = copied_options(ip.options)
    pieces, start, options = [], 0, ip.options
    while start < len(data):
        room = (mtu - 20 - len(options)) // 8 * 8
        if room < 8:
            raise ValueError(f"mtu {mtu} leaves no room for 8 bytes of data (RFC 791 minimum is 68)")
        chunk = data[start : start + room]
        last = start + len(chunk) >= len(data)
        more = ip.mf if last else True
        flags = (ip.flags & ~IPFlags.MF) | (IPFlags.MF if more else IPFlags.NONE)
        header = IPv4Header(
            src=ip.src, dst=ip.dst, proto=ip.proto, total_length=20 + len(options) + len(chunk),
            ttl=ip.ttl, ident=ip.ident, flags=flags, frag_offset=ip.frag_offset + start,
            tos=ip.tos, options=options,
        )
        pieces.append(header.emit() + chunk)
        start += len(chunk)
        options = later_options
    return pieces


def _set16(buf: bytes, at: int, value: int) -> bytes:
    return buf[:at] + struct.pack("!H", value) + buf[at + 2 :]
