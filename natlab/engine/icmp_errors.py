"""ICMP error translation (RFC 5508 section 4.2, REQ-3 to REQ-6).

An ICMP error (destination unreachable 3, source quench 4, time exceeded 11,
parameter problem 12) quotes the packet that caused it. To reach the right host
the NAT translates the outer header *and* the quoted one, as if the quote were a
packet going the other way:

- from outside, the quote is one of our translated outbound packets
  (X':x' -> Y:y): its mapping gives X:x; outer destination X' -> X, quoted
  source X':x' -> X:x;
- from inside, the quote is an inbound packet we translated (Y:y -> X:x):
  outer source X -> X', quoted destination X:x -> X':x'.

An error about a static 1:1 host's packet only has its addresses changed, so it
reaches the host whatever the quoted protocol (GRE, ESP, ...). An error from
inside about a *hairpinned* packet is addressed to one of our external addresses:
after the inside-to-outside translation it is translated again as if it came in
from outside, and turns back to the sender (RFC 5508 REQ-7).

An error whose quote matches no active mapping and session is dropped (REQ-3a).
The quoted IP header's checksum and the ICMP checksum are recomputed in full; the
quoted transport checksum (often cut off) is adjusted incrementally (RFC 1624).

Translation only reads the state (an :class:`ErrorContext`: the two lookup tables,
the owned addresses and the counters); it never opens or ends a session.
"""

from __future__ import annotations

from typing import Mapping as Dict
from typing import Optional, Protocol

from natlab.engine.checksum_deltas import ICMP, TCP, UDP, L4_CSUM_OFFSET, add_to_csum, add_to_udp_csum
from natlab.engine.counters import Counters
from natlab.engine.table import Mapping, Session
from natlab.engine.types import Addresses, Side
from natlab.engine.verdicts import Drop, DropReason, Forward, Hairpin, Verdict
from natlab.packet.checksum import checksum, delta32, fold

ERROR_TYPES = frozenset({3, 4, 11, 12})


class ErrorContext(Protocol):
    """What ICMP error translation reads of the NAT's state (and the counters it bumps)."""

    by_flow: Dict[tuple, Session]
    by_external: Dict[tuple, Mapping]
    counters: Counters

    @property
    def addresses(self) -> Addresses: ...


def translate(ctx: ErrorContext, data, ihl: int, total: int, side: Side, now: float, events) -> Verdict:
    """Translate one ICMP error packet arriving on ``side``."""
    q = ihl + 8  # the quoted IP header
    if total < q + 20 or data[q] >> 4 != 4:
        return ctx.counters.drop(DropReason.MALFORMED, events)
    qihl = (data[q] & 15) << 2
    ql4 = q + qihl
    if qihl < 20 or total < ql4 + 8:
        return ctx.counters.drop(DropReason.MALFORMED, events)
    qproto = data[q + 9]
    qsrc = int.from_bytes(data[q + 12:q + 16], "big")
    qdst = int.from_bytes(data[q + 16:q + 20], "big")
    static = _static_address(ctx, side, qsrc, qdst)
    if static is not None:
        done = _translate_static(ctx, bytearray(data), ihl, q, qihl, total, side, static, events)
        return _hairpin_back(ctx, done, ihl, total, side, now, events)
    if qproto == UDP or qproto == TCP:
        qsport = (data[ql4] << 8) | data[ql4 + 1]
        qdport = (data[ql4 + 2] << 8) | data[ql4 + 3]
        sport_off, dport_off = 0, 2
    elif qproto == ICMP and data[ql4] in (8, 0):
        ident = (data[ql4 + 4] << 8) | data[ql4 + 5]
        # An echo request we sent out quotes (X', id'); an echo reply we let in quotes (Y -> X, id).
        qsport, qdport = (ident, 0) if data[ql4] == 8 else (0, ident)
        sport_off = dport_off = 4
    else:
        return ctx.counters.drop(DropReason.ICMP_ERROR_UNMATCHED, events)

    buf = bytearray(data)
    if side is Side.OUTSIDE:
        m = ctx.by_external.get((qproto, qsrc, qsport))
        if m is None or (qdst, qdport) not in m.sessions:
            return ctx.counters.drop(DropReason.ICMP_ERROR_UNMATCHED, events)
        buf[16:20] = m.int_addr_bytes  # outer destination X' -> X
        buf[q + 12:q + 16] = m.int_addr_bytes  # quoted source X' -> X
        _set_port(buf, ql4 + sport_off, m.internal.port)
        _fix_quoted_l4(buf, ql4, total, qproto, m.l4_in)
        m.packets_in += 1
        ctx.counters.translated_in += 1
    else:
        sess = ctx.by_flow.get((qproto, qdst, qdport, qsrc, qsport))
        if sess is None:
            return ctx.counters.drop(DropReason.ICMP_ERROR_UNMATCHED, events)
        m = sess.mapping
        buf[12:16] = m.ext_addr_bytes  # outer source X -> X'
        buf[q + 16:q + 20] = m.ext_addr_bytes  # quoted destination X -> X'
        _set_port(buf, ql4 + dport_off, m.external.port)
        _fix_quoted_l4(buf, ql4, total, qproto, m.l4_out)
        m.packets_out += 1
        ctx.counters.translated_out += 1
    _recompute(buf, 0, ihl)  # outer IP header
    _recompute(buf, q, qihl)  # quoted IP header
    buf[ihl + 2:ihl + 4] = b"\x00\x00"
    buf[ihl + 2:ihl + 4] = checksum(buf[ihl:total]).to_bytes(2, "big")
    return _hairpin_back(ctx, Forward(buf, tuple(events) if events else ()), ihl, total, side, now, events)


def _hairpin_back(ctx: ErrorContext, done: Verdict, ihl: int, total: int, side: Side, now: float, events) -> Verdict:
    """An error from inside about a hairpinned packet: translate it in again, to the sender."""
    if side is Side.OUTSIDE or done.__class__ is not Forward:
        return done
    buf = done.data
    dst = int.from_bytes(buf[16:20], "big")
    if not ctx.addresses.owns(dst):
        return done
    back = translate(ctx, buf, ihl, total, Side.OUTSIDE, now, events)
    if back.__class__ is Drop:
        return back
    ctx.counters.hairpinned += 1
    return Hairpin(back.data, back.events, back.emits)


def _set_port(buf: bytearray, off: int, port: int) -> None:
    buf[off] = port >> 8
    buf[off + 1] = port & 0xFF


def _fix_quoted_l4(buf: bytearray, ql4: int, total: int, qproto: int, delta: int) -> None:
    """Adjust the quoted transport checksum, when the quote reaches it."""
    off = ql4 + L4_CSUM_OFFSET[qproto]
    if off + 2 > total:
        return
    if qproto == UDP:
        add_to_udp_csum(buf, off, delta)
    else:
        add_to_csum(buf, off, delta)


def _recompute(buf: bytearray, start: int, length: int) -> None:
    buf[start + 10:start + 12] = b"\x00\x00"
    buf[start + 10:start + 12] = checksum(buf[start:start + length]).to_bytes(2, "big")


def _static_address(ctx: ErrorContext, side: Side, qsrc: int, qdst: int) -> Optional[int]:
    """The static 1:1 address the quoted packet's NATed address maps to, if any."""
    if side is Side.OUTSIDE:
        return ctx.addresses.static_in.get(qsrc)
    return ctx.addresses.static_out.get(qdst)


def _translate_static(ctx: ErrorContext, buf: bytearray, ihl, q, qihl, total, side: Side, new_addr: int, events):
    """Static 1:1 NAT: only addresses change, in the outer header and in the quote."""
    new = new_addr.to_bytes(4, "big")
    ql4 = q + qihl
    qproto = buf[q + 9]
    if side is Side.OUTSIDE:
        old = int.from_bytes(buf[q + 12:q + 16], "big")
        buf[16:20] = new
        buf[q + 12:q + 16] = new
        ctx.counters.translated_in += 1
    else:
        old = int.from_bytes(buf[q + 16:q + 20], "big")
        buf[12:16] = new
        buf[q + 16:q + 20] = new
        ctx.counters.translated_out += 1
    if qproto in (UDP, TCP):
        _fix_quoted_l4(buf, ql4, total, qproto, fold(delta32(old, new_addr)))
    _recompute(buf, 0, ihl)
    _recompute(buf, q, qihl)
    buf[ihl + 2:ihl + 4] = b"\x00\x00"
    buf[ihl + 2:ihl + 4] = checksum(buf[ihl:total]).to_bytes(2, "big")
    return Forward(buf, tuple(events) if events else ())
