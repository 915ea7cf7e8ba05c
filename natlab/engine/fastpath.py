"""Fast-path entries: what the engine has already decided, for a cache to repeat.

Theory of operation
-------------------
A datapath with a fast path (the kernel session cache, DPDK's C table) asks the
engine, after each packet it forwarded, whether the next packets of the same
5-tuple and direction would be handled identically: :func:`entry_for` answers
with a :class:`FastEntry` (match on the wire 5-tuple, the rewrite, a deadline)
or None. The engine stays the only authority: an entry is offered only for an
established session (RFC 4787 section 4.3: a UDP session; RFC 5382: TCP in
ESTABLISHED, for segments without SYN, FIN or RST; RFC 5508: ICMP echo), never
for hairpinned, static 1:1, fragmented or ICMP-error traffic, and it lives at
most one *quantum* and never past the session's own deadline. So the engine
sees at least one packet per direction per quantum, and its timers, refresh
direction, filtering and events stay exact to that quantum.

:func:`fold` gives back what the cache did: the packets it rewrote are
counted as if the engine had, and the session is refreshed as of the last one
when the policy's refresh direction says packets on that side refresh
(RFC 4787 REQ-6).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from natlab.engine.checksum_deltas import ICMP, TCP, UDP
from natlab.engine.state import NatState
from natlab.engine.table import FIN, RST, SYN, Session, TcpState
from natlab.engine.types import Side, to_str

__all__ = ["FastEntry", "entry_for", "fold"]

_IPV4 = struct.Struct("!BBHHHBBHII")
_PORTS = struct.Struct("!HH")
_CONTROL = SYN | FIN | RST


@dataclass(frozen=True, slots=True)
class FastEntry:
    """One direction of an established session: packets with exactly this wire 5-tuple
    arriving on ``side`` (unfragmented; TCP without SYN/FIN/RST) get this rewrite until
    ``expires`` (engine time).

    Addresses are 32-bit ints. ICMP echo: an outbound request (type 8) matches on
    ``sport`` = its identifier (``dport`` 0); an inbound reply (type 0) on ``dport`` =
    its identifier (``sport`` 0).
    """

    side: Side
    proto: int
    src: int
    sport: int
    dst: int
    dport: int
    new_src: int
    new_sport: int
    new_dst: int
    new_dport: int
    expires: float

    @property
    def key(self) -> tuple[int, int, int, int, int]:
        """(proto, src, sport, dst, dport): the match, as the packet arrives."""
        return (self.proto, self.src, self.sport, self.dst, self.dport)

    @property
    def outbound(self) -> bool:
        """An inside-to-outside entry: it rewrites the source (else the destination)."""
        return self.side is Side.INSIDE

    @property
    def icmp_type(self) -> Optional[int]:
        """8 (echo request, outbound) or 0 (echo reply, inbound) for ICMP; else None."""
        if self.proto != ICMP:
            return None
        return 8 if self.outbound else 0

    def describe(self) -> str:
        return (f"{self.proto} {to_str(self.src)}:{self.sport} > {to_str(self.dst)}:{self.dport} => "
                f"{to_str(self.new_src)}:{self.new_sport} > {to_str(self.new_dst)}:{self.new_dport}"
                f" until {self.expires:.3f}")


def _session(st: NatState, side: Side, proto: int, src: int, sport: int, dst: int, dport: int) -> Optional[Session]:
    if side is Side.INSIDE:
        return st.by_flow.get((proto, src, sport, dst, dport))
    m = st.by_external.get((proto, dst, dport))
    return None if m is None else m.sessions.get((src, sport))


def entry_for(st: NatState, data: bytes | bytearray, side: Side, now: float, quantum: float) -> Optional[FastEntry]:
    """The entry for the packet ``data`` (as it arrived) that the engine just forwarded, or None."""
    if st.refresh_events or quantum <= 0 or len(data) < 28:
        return None
    vihl, _tos, total, _ident, frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(data)
    ihl = (vihl & 15) << 2
    if vihl >> 4 != 4 or ihl < 20 or frag & 0x3FFF or total > len(data) or total < ihl + 8:
        return None
    a = st.addresses
    if proto == UDP or proto == TCP:
        if proto == TCP and (total < ihl + 20 or data[ihl + 13] & _CONTROL):
            return None
        sport, dport = _PORTS.unpack_from(data, ihl)
    elif proto == ICMP:
        itype = data[ihl]
        ident = (data[ihl + 4] << 8) | data[ihl + 5]
        if side is Side.INSIDE and itype == 8:
            sport, dport = ident, 0
        elif side is Side.OUTSIDE and itype == 0:
            sport, dport = 0, ident
        else:
            return None
    else:
        return None
    if side is Side.INSIDE and (dst in a.pool_set or dst in a.static_in):
        return None  # hairpin: every packet goes through the engine
    sess = _session(st, side, proto, src, sport, dst, dport)
    if sess is None or sess.dead or (proto == TCP and sess.state is not TcpState.ESTABLISHED):
        return None
    m = sess.mapping
    expires = min(now + quantum, sess.expires)
    if m.kind != "dynamic" and m.expires is not None:
        expires = min(expires, m.expires)  # an explicit port mapping's lifetime ends it too
    if expires <= now:
        return None
    if side is Side.INSIDE:
        new = (m.external.addr, m.external.port, dst, dport)
    else:
        new = (src, sport, m.internal.addr, m.internal.port)
    return FastEntry(side, proto, src, sport, dst, dport, *new, expires)


def fold(st: NatState, entry: FastEntry, packets: int, last_seen: float) -> None:
    """Count ``packets`` the fast path rewrote for ``entry`` (the last at ``last_seen``) and
    refresh the session as of then, if packets on its side refresh (REQ-6)."""
    if packets <= 0:
        return
    sess = _session(st, entry.side, *entry.key)
    counters = st.counters
    if entry.outbound:
        counters.translated_out += packets
    else:
        counters.translated_in += packets
    if sess is None or sess.dead:
        return
    if entry.outbound:
        sess.mapping.packets_out += packets
    else:
        sess.mapping.packets_in += packets
    refresh = st.refresh_out if entry.outbound else st.refresh_in
    if refresh and last_seen + st.timeout(sess, last_seen) > sess.expires:
        st.touch(sess, 1 if entry.outbound else 2, 0, last_seen, True, None)
