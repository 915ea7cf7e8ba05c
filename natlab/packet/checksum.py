"""Internet checksums: full (RFC 1071) and incremental (RFC 1624).

The engine rewrites addresses and ports in place and fixes checksums with
``HC' = ~(~HC + ~m + m')`` (RFC 1624 eqn. 3) instead of summing whole packets.
A *delta* is the one's-complement sum ``~m + m'`` for a set of field changes;
deltas add, so one precomputed per mapping serves every packet of it.
"""

from __future__ import annotations

import struct


def fold(total: int) -> int:
    """Fold a one's-complement sum to 16 bits."""
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """RFC 1071 Internet checksum of ``data`` (odd length padded with a zero byte)."""
    raw = bytes(data)
    if len(raw) % 2:
        raw += b"\x00"
    total = initial + sum(struct.unpack(f"!{len(raw) // 2}H", raw))
    return (~fold(total)) & 0xFFFF


def delta16(old: int, new: int) -> int:
    """The one's-complement delta for one 16-bit field changing from ``old`` to ``new``."""
    return (~old & 0xFFFF) + new


def delta32(old: int, new: int) -> int:
    """The delta for a 32-bit field (an IPv4 address) changing."""
    return (~old >> 16 & 0xFFFF) + (~old & 0xFFFF) + (new >> 16) + (new & 0xFFFF)


def apply_delta(csum: int, delta: int) -> int:
    """A checksum field's new value after changes summing to ``delta`` (RFC 1624 eqn. 3)."""
    return (~fold((~csum & 0xFFFF) + fold(delta))) & 0xFFFF


def pseudo_header_sum(src: int, dst: int, proto: int, length: int) -> int:
    """Unfolded sum of the IPv4 pseudo-header used by TCP and UDP checksums."""
    return (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length


def udp_checksum_field(value: int) -> int:
    """The value to send for a computed UDP checksum: 0 goes out as 0xFFFF,
    since 0 on the wire means "no checksum" (RFC 768)."""
    return 0xFFFF if value == 0 else value


def transport_checksum(src: int, dst: int, proto: int, segment: bytes) -> int:
    """Full TCP/UDP checksum of ``segment`` (its checksum field zeroed) with the
    IPv4 pseudo-header (RFC 793 3.1, RFC 768). For UDP pass the result through
    :func:`udp_checksum_field`."""
    return checksum(segment, pseudo_header_sum(src, dst, proto, len(segment)))
