"""Per-mapping checksum deltas and the in-place rewrites that use them (RFC 1624).

A mapping rewrites the same fields of every packet it carries (an address and a
port, or an ICMP identifier), so the one's-complement delta for its IPv4 header
checksum and for its transport checksum is computed once, when the mapping is
made; each packet then costs one addition and a fold per checksum.
"""

from __future__ import annotations

from natlab.engine.types import Endpoint, Proto
from natlab.packet.checksum import fold

UDP, TCP, ICMP = int(Proto.UDP), int(Proto.TCP), int(Proto.ICMP)

# Offset of the transport checksum from the start of the transport header.
L4_CSUM_OFFSET = {UDP: 6, TCP: 16, ICMP: 2}


def mapping_deltas(proto: int, internal: Endpoint, external: Endpoint) -> tuple[int, int, int, int]:
    """(ip_out, l4_out, ip_in, l4_in) deltas for internal<->external rewrites."""
    # delta32/delta16/fold of natlab.packet.checksum, inlined: this runs for every new mapping.
    a, b = internal.addr, external.addr
    a_hi, a_lo, b_hi, b_lo = a >> 16, a & 0xFFFF, b >> 16, b & 0xFFFF
    ip_out = _fold((a_hi ^ 0xFFFF) + (a_lo ^ 0xFFFF) + b_hi + b_lo)
    ip_in = _fold((b_hi ^ 0xFFFF) + (b_lo ^ 0xFFFF) + a_hi + a_lo)
    x, y = internal.port, external.port
    port_out = (~x & 0xFFFF) + y
    port_in = (~y & 0xFFFF) + x
    if proto == ICMP:
        # The ICMP checksum has no pseudo-header: only the identifier counts.
        return ip_out, _fold(port_out), ip_in, _fold(port_in)
    return ip_out, _fold(ip_out + port_out), ip_in, _fold(ip_in + port_in)


def _fold(total: int) -> int:
    total = (total & 0xFFFF) + (total >> 16)
    return fold(total) if total > 0xFFFF else total


def add_to_csum(buf: bytearray, off: int, delta: int) -> None:
    """Apply a folded delta to the 16-bit checksum at ``buf[off]`` (RFC 1624 eqn. 3)."""
    c = (~((buf[off] << 8) | buf[off + 1]) & 0xFFFF) + delta
    c = (c & 0xFFFF) + (c >> 16)
    c = ~((c & 0xFFFF) + (c >> 16)) & 0xFFFF
    buf[off] = c >> 8
    buf[off + 1] = c & 0xFF


def add_to_udp_csum(buf: bytearray, off: int, delta: int) -> None:
    """As :func:`add_to_csum`, keeping RFC 768's rules: 0 means "no checksum", and a
    computed 0 is sent as 0xFFFF."""
    if buf[off] == 0 and buf[off + 1] == 0:
        return
    add_to_csum(buf, off, delta)
    if buf[off] == 0 and buf[off + 1] == 0:
        buf[off] = buf[off + 1] = 0xFF


def rewrite_l4(buf: bytearray, l4: int, proto: int, port_off: int, port: int, delta: int) -> None:
    """Write ``port`` at ``l4 + port_off`` and fix the transport checksum by ``delta``."""
    buf[l4 + port_off] = port >> 8
    buf[l4 + port_off + 1] = port & 0xFF
    if proto == UDP:
        add_to_udp_csum(buf, l4 + 6, delta)
    else:
        add_to_csum(buf, l4 + L4_CSUM_OFFSET[proto], delta)


def rewrite(buf: bytearray, addr_at: int, addr: bytes, ip_delta: int, l4: int, proto: int, port_off: int,
            port: int, l4_delta: int) -> None:
    """One translation in place: the address at ``addr_at`` (12 source, 16 destination), the
    IPv4 header checksum by ``ip_delta``, the port at ``l4 + port_off`` and the transport
    checksum by ``l4_delta``, with UDP's zero rules. What ``buf[addr_at:addr_at + 4] = addr``,
    :func:`add_to_csum` and :func:`rewrite_l4` do, in one call: the per-packet path."""
    buf[addr_at:addr_at + 4] = addr
    c = (~((buf[10] << 8) | buf[11]) & 0xFFFF) + ip_delta
    c = (c & 0xFFFF) + (c >> 16)
    c = ~((c & 0xFFFF) + (c >> 16)) & 0xFFFF
    buf[10] = c >> 8
    buf[11] = c & 0xFF
    at = l4 + port_off
    buf[at] = port >> 8
    buf[at + 1] = port & 0xFF
    if proto == UDP:
        at = l4 + 6
        if buf[at] == 0 and buf[at + 1] == 0:
            return  # RFC 768: no checksum
    else:
        at = l4 + L4_CSUM_OFFSET[proto]
    c = (~((buf[at] << 8) | buf[at + 1]) & 0xFFFF) + l4_delta
    c = (c & 0xFFFF) + (c >> 16)
    c = ~((c & 0xFFFF) + (c >> 16)) & 0xFFFF
    if c == 0 and proto == UDP:
        c = 0xFFFF  # a computed 0 is sent as 0xFFFF
    buf[at] = c >> 8
    buf[at + 1] = c & 0xFF
