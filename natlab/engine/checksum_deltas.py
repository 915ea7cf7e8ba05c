"""Per-mapping checksum deltas and the in-place rewrites that use them (RFC 1624).

A mapping rewrites the same fields of every packet it carries (an address and a
port, or an ICMP identifier), so the one's-complement delta for its IPv4 header
checksum and for its transport checksum is computed once, when the mapping is
made; each packet then costs one addition and a fold per checksum.
"""

from __future__ import annotations

from natlab.engine.types import Endpoint, Proto
from natlab.packet.checksum import delta16, delta32, fold

UDP, TCP, ICMP = int(Proto.UDP), int(Proto.TCP), int(Proto.ICMP)

# Offset of the transport checksum from the start of the transport header.
L4_CSUM_OFFSET = {UDP: 6, TCP: 16, ICMP: 2}


def mapping_deltas(proto: int, internal: Endpoint, external: Endpoint) -> tuple[int, int, int, int]:
    """(ip_out, l4_out, ip_in, l4_in) deltas for internal<->external rewrites."""
    ip_out = fold(delta32(internal.addr, external.addr))
    ip_in = fold(delta32(external.addr, internal.addr))
    port_out = delta16(internal.port, external.port)
    port_in = delta16(external.port, internal.port)
    if proto == ICMP:
        # The ICMP checksum has no pseudo-header: only the identifier counts.
        return ip_out, fold(port_out), ip_in, fold(port_in)
    return ip_out, fold(ip_out + port_out), ip_in, fold(ip_in + port_in)


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
