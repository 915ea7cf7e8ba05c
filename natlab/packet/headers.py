"""Frozen header values: parse() from bytes, emit() back, summarize() for logs.

Theory of operation
-------------------
This is the *value* level of the packet layer (the engine's in-place level
rewrites bytes directly). Each header is a frozen dataclass; ``parse(buf)``
returns ``(header, offset_of_what_follows)`` and ``emit()`` returns the header's
bytes with its checksum field exactly as stored (``None`` means "compute it":
the IPv4 header checksum only, since L4 checksums need the payload; use
:mod:`natlab.packet.build` for whole packets).

Parsing never raises anything but :class:`PacketError`. ``IPv4Header.parse``
takes ``quoted=True`` for a datagram quoted inside an ICMP error (RFC 792),
which is truncated on purpose, so ``total_length`` may exceed the buffer.

Units: addresses are ints; ``frag_offset`` is in bytes (a multiple of 8; the
wire field holds it divided by 8, RFC 791).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from ipaddress import IPv4Address
from typing import Optional, Union

from natlab.errors import NatlabError
from natlab.packet.checksum import checksum

AddressLike = Union[str, int, IPv4Address]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17


class PacketError(NatlabError, ValueError):
    """A packet is truncated or inconsistent (the only error parsing raises)."""


def to_int(address: AddressLike) -> int:
    """An IPv4 address as an int, from str, int or IPv4Address."""
    if isinstance(address, int):
        if not 0 <= address <= 0xFFFFFFFF:
            raise ValueError(f"IPv4 address out of range: got {address!r}")
        return address
    return int(IPv4Address(address))


def to_str(address: int) -> str:
    """An int IPv4 address in dotted-quad form."""
    return str(IPv4Address(address))


class IPFlags(IntFlag):
    """The 3 flag bits of the IPv4 header (RFC 791): reserved, DF, MF."""

    NONE = 0
    MF = 1
    DF = 2
    RESERVED = 4


class TCPFlags(IntFlag):
    """TCP control bits (RFC 793; ECE/CWR from RFC 3168)."""

    NONE = 0
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


class ICMPType(IntEnum):
    """ICMP message types (RFC 792)."""

    ECHO_REPLY = 0
    DEST_UNREACHABLE = 3
    SOURCE_QUENCH = 4
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAMETER_PROBLEM = 12


ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
"""Types whose body quotes the offending datagram (RFC 792)."""

_ICMP_NAMES = {
    (0, None): "echo-reply",
    (8, None): "echo-request",
    (3, 0): "net-unreachable",
    (3, 1): "host-unreachable",
    (3, 2): "protocol-unreachable",
    (3, 3): "port-unreachable",
    (3, 4): "frag-needed",
    (3, 9): "net-prohibited",
    (3, 10): "host-prohibited",
    (3, 13): "admin-prohibited",
    (3, None): "unreachable",
    (4, None): "source-quench",
    (5, None): "redirect",
    (11, 0): "ttl-exceeded",
    (11, 1): "reassembly-exceeded",
    (11, None): "time-exceeded",
    (12, None): "parameter-problem",
}


def icmp_name(type_: int, code: int) -> str:
    """A short name for an ICMP type/code, e.g. "port-unreachable"."""
    name = _ICMP_NAMES.get((type_, code)) or _ICMP_NAMES.get((type_, None))
    return name or f"type={type_} code={code}"


def _need(buf: bytes, size: int, what: str) -> None:
    if len(buf) < size:
        raise PacketError(f"truncated {what}", got=f"{len(buf)} bytes, need {size}")


@dataclass(frozen=True, slots=True)
class IPv4Header:
    """An IPv4 header (RFC 791). ``checksum=None`` is computed by emit()."""

    src: int
    dst: int
    proto: int
    total_length: int = 20
    ttl: int = 64
    ident: int = 0
    flags: IPFlags = IPFlags.NONE
    frag_offset: int = 0
    """Offset of this fragment's data in bytes (multiple of 8)."""
    tos: int = 0
    options: bytes = b""
    """Raw option bytes, already padded to a multiple of 4."""
    checksum: Optional[int] = None
    version: int = 4

    @property
    def ihl(self) -> int:
        """Header length in 32-bit words (5 without options)."""
        return 5 + len(self.options) // 4

    @property
    def header_length(self) -> int:
        return self.ihl * 4

    @property
    def payload_length(self) -> int:
        return self.total_length - self.header_length

    @property
    def df(self) -> bool:
        return bool(self.flags & IPFlags.DF)

    @property
    def mf(self) -> bool:
        return bool(self.flags & IPFlags.MF)

    @property
    def is_fragment(self) -> bool:
        """True for any fragment (first, middle or last) of a larger datagram."""
        return self.mf or self.frag_offset > 0

    @classmethod
    def parse(cls, buf: bytes, *, quoted: bool = False) -> tuple["IPv4Header", int]:
        """Parse the header at the start of ``buf``; returns (header, payload offset).

        With ``quoted`` (an ICMP error's quote, RFC 792) ``buf`` may hold less
        than ``total_length`` bytes.
        """
        buf = bytes(buf)
        _need(buf, 20, "IPv4 header")
        ver_ihl, tos, total, ident, frag, ttl, proto, csum, src, dst = struct.unpack(
            "!BBHHHBBHII", buf[:20]
        )
        version, ihl = ver_ihl >> 4, ver_ihl & 0xF
        if version != 4:
            raise PacketError("not an IPv4 packet", got=f"version {version}")
        if ihl < 5:
            raise PacketError("bad IPv4 IHL", got=ihl, hint="must be at least 5")
        _need(buf, ihl * 4, "IPv4 options")
        if total < ihl * 4:
            raise PacketError("IPv4 total_length shorter than its header", got=total)
        if not quoted and total > len(buf):
            raise PacketError("truncated IPv4 packet", got=f"{len(buf)} of {total} bytes")
        header = cls(
            src=src, dst=dst, proto=proto, total_length=total, ttl=ttl, ident=ident,
            flags=IPFlags(frag >> 13), frag_offset=(frag & 0x1FFF) * 8, tos=tos,
            options=buf[20 : ihl * 4], checksum=csum, version=version,
        )
        return header, ihl * 4

    def emit(self) -> bytes:
        """The header's bytes; the checksum is computed when it is None."""
        if len(self.options) % 4 or len(self.options) > 40:
            raise ValueError(f"IPv4 options must be padded to 4 bytes, at most 40: got {len(self.options)}")
        if self.frag_offset % 8:
            raise ValueError(f"frag_offset must be a multiple of 8 bytes: got {self.frag_offset}")
        frag = (int(self.flags) << 13) | (self.frag_offset // 8)
        raw = struct.pack(
            "!BBHHHBBHII", (self.version << 4) | self.ihl, self.tos, self.total_length,
            self.ident, frag, self.ttl, self.proto, 0, self.src, self.dst,
        ) + self.options
        csum = checksum(raw) if self.checksum is None else self.checksum
        return raw[:10] + struct.pack("!H", csum) + raw[12:]


@dataclass(frozen=True, slots=True)
class UDPHeader:
    """A UDP header (RFC 768). checksum 0 means "no checksum"."""

    sport: int
    dport: int
    length: int = 8
    checksum: int = 0

    @classmethod
    def parse(cls, buf: bytes) -> tuple["UDPHeader", int]:
        """Parse the 8-byte header; returns (header, 8)."""
        _need(buf, 8, "UDP header")
        sport, dport, length, csum = struct.unpack("!HHHH", bytes(buf[:8]))
        return cls(sport, dport, length, csum), 8

    def emit(self) -> bytes:
        return struct.pack("!HHHH", self.sport, self.dport, self.length, self.checksum)


@dataclass(frozen=True, slots=True)
class TCPHeader:
    """A TCP header (RFC 793) with its raw options."""

    sport: int
    dport: int
    seq: int = 0
    ack: int = 0
    flags: TCPFlags = TCPFlags.NONE
    window: int = 65535
    checksum: int = 0
    urgent: int = 0
    options: bytes = b""
    """Raw option bytes, padded to a multiple of 4."""
    reserved: int = 0
    """The 4 bits between data offset and flags (kept for a faithful emit)."""

    @property
    def data_offset(self) -> int:
        """Header length in 32-bit words."""
        return 5 + len(self.options) // 4

    @classmethod
    def parse(cls, buf: bytes) -> tuple["TCPHeader", int]:
        """Parse the header incl. options; returns (header, data offset in bytes)."""
        buf = bytes(buf)
        _need(buf, 20, "TCP header")
        sport, dport, seq, ack, off, flags, window, csum, urg = struct.unpack(
            "!HHIIBBHHH", buf[:20]
        )
        length = (off >> 4) * 4
        if length < 20:
            raise PacketError("bad TCP data offset", got=off >> 4, hint="must be at least 5")
        _need(buf, length, "TCP options")
        header = cls(
            sport, dport, seq, ack, TCPFlags(flags), window, csum, urg,
            options=buf[20:length], reserved=off & 0xF,
        )
        return header, length

    def emit(self) -> bytes:
        if len(self.options) % 4 or len(self.options) > 40:
            raise ValueError(f"TCP options must be padded to 4 bytes, at most 40: got {len(self.options)}")
        off = (self.data_offset << 4) | self.reserved
        return struct.pack(
            "!HHIIBBHHH", self.sport, self.dport, self.seq, self.ack, off,
            int(self.flags), self.window, self.checksum, self.urgent,
        ) + self.options


@dataclass(frozen=True, slots=True)
class ICMPHeader:
    """An ICMP header (RFC 792): type, code, checksum and the 4-byte rest.

    ``rest`` is the second 32-bit word: identifier and sequence number for
    echo, the next-hop MTU in its low half for frag-needed (RFC 1191), unused
    (zero) for most errors.
    """

    type: int
    code: int = 0
    checksum: int = 0
    rest: int = 0

    @property
    def ident(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF

    @property
    def next_hop_mtu(self) -> int:
        return self.rest & 0xFFFF

    @property
    def is_error(self) -> bool:
        """True when the body quotes an offending datagram."""
        return self.type in ICMP_ERROR_TYPES

    @classmethod
    def echo(cls, ident: int, seq: int, *, reply: bool = False, checksum: int = 0) -> "ICMPHeader":
        """An echo request (type 8) or reply (type 0) header."""
        return cls(0 if reply else 8, 0, checksum, (ident << 16) | seq)

    @classmethod
    def parse(cls, buf: bytes) -> tuple["ICMPHeader", int]:
        """Parse the 8-byte header; returns (header, 8)."""
        _need(buf, 8, "ICMP header")
        type_, code, csum, rest = struct.unpack("!BBHI", bytes(buf[:8]))
        return cls(type_, code, csum, rest), 8

    def emit(self) -> bytes:
        return struct.pack("!BBHI", self.type, self.code, self.checksum, self.rest)


TransportHeader = Union[UDPHeader, TCPHeader, ICMPHeader]


@dataclass(frozen=True, slots=True)
class Packet:
    """A parsed IPv4 packet: IP header, transport header (None for later
    fragments and other protocols) and the bytes after them."""

    ip: IPv4Header
    l4: Optional[TransportHeader]
    payload: bytes = field(repr=False)


def parse_l4(proto: int, buf: bytes) -> tuple[Optional[TransportHeader], int]:
    """Parse a transport header of protocol ``proto``; (None, 0) for others."""
    parsers = {PROTO_UDP: UDPHeader, PROTO_TCP: TCPHeader, PROTO_ICMP: ICMPHeader}
    parser = parsers.get(proto)
    return parser.parse(buf) if parser else (None, 0)


def parse_packet(data: bytes) -> Packet:
    """Parse a whole IPv4 packet (bytes past total_length are ignored)."""
    ip, offset = IPv4Header.parse(data)
    body = bytes(data[offset : ip.total_length])
    if ip.frag_offset:
        return Packet(ip, None, body)
    l4, l4_len = parse_l4(ip.proto, body)
    return Packet(ip, l4, body[l4_len:])


# --- summarize ----------------------------------------------------------------


def _flow(ip: IPv4Header, body: bytes) -> str:
    """ "udp a:p -> b:q" for a (possibly truncated) datagram, from ports only."""
    src, dst = to_str(ip.src), to_str(ip.dst)
    if ip.proto in (PROTO_UDP, PROTO_TCP) and len(body) >= 4 and not ip.frag_offset:
        sport, dport = struct.unpack("!HH", body[:4])
        name = "udp" if ip.proto == PROTO_UDP else "tcp"
        return f"{name} {src}:{sport} -> {dst}:{dport}"
    if ip.proto == PROTO_ICMP and len(body) >= 8 and not ip.frag_offset:
        icmp, _ = ICMPHeader.parse(body)
        return f"icmp {_icmp_label(icmp)} {src} -> {dst}"
    return f"proto {ip.proto} {src} -> {dst}"


def _icmp_label(icmp: ICMPHeader) -> str:
    label = icmp_name(icmp.type, icmp.code)
    if icmp.type in (0, 8):
        label += f" id={icmp.ident} seq={icmp.seq}"
    elif (icmp.type, icmp.code) == (3, 4):
        label += f" mtu={icmp.next_hop_mtu}"
    return label


def _quote(quote: bytes) -> str:
    try:
        inner, offset = IPv4Header.parse(quote, quoted=True)
    except PacketError:
        return f"malformed quote ({len(quote)} bytes)"
    return _flow(inner, quote[offset:])


def _summarize_l4(ip: IPv4Header, body: bytes) -> str:
    src, dst = to_str(ip.src), to_str(ip.dst)
    if ip.proto == PROTO_UDP:
        udp, _ = UDPHeader.parse(body)
        return f"udp {src}:{udp.sport} -> {dst}:{udp.dport} len={len(body) - 8}"
    if ip.proto == PROTO_TCP:
        tcp, off = TCPHeader.parse(body)
        names = [f.name for f in TCPFlags if f and f in tcp.flags]
        text = f"tcp {src}:{tcp.sport} -> {dst}:{tcp.dport} [{','.join(names)}]"
        return text + (f" len={len(body) - off}" if len(body) > off else "")
    if ip.proto == PROTO_ICMP:
        icmp, _ = ICMPHeader.parse(body)
        text = f"icmp {_icmp_label(icmp)} {src} -> {dst}"
        if icmp.is_error:
            text += f" [{_quote(body[8:])}]"
        return text
    return f"proto {ip.proto} {src} -> {dst} len={len(body)}"


def summarize(data: bytes) -> str:
    """One line describing a packet, for logs; never raises.

    ``len=`` is the UDP/TCP payload length (like tcpdump); fragments after
    the first show as ``frag id=.. off=..`` since they carry no ports.
    """
    data = bytes(data)
    try:
        ip, offset = IPv4Header.parse(data)
        body = data[offset : ip.total_length]
        if ip.frag_offset:
            more = " mf" if ip.mf else ""
            return (
                f"frag id={ip.ident} off={ip.frag_offset}{more} proto={ip.proto} "
                f"{to_str(ip.src)} -> {to_str(ip.dst)} len={len(body)}"
            )
        if ip.mf:  # first fragment: the transport header may be cut short
            return f"{_flow(ip, body)} frag id={ip.ident} off=0 mf len={len(body)}"
        return _summarize_l4(ip, body)
    except PacketError:
        return f"malformed ({len(data)} bytes)"
