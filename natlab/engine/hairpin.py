"""Hairpinning (RFC 4787 section 6, REQ-9; RFC 5382 REQ-8; RFC 5508 REQ-7).

Theory of operation
-------------------
An inside host A sends to an external endpoint the NAT owns: a dynamic mapping's
X':x' on a pool address, or a static 1:1 external address (any port). The packet
turns back inside, translated twice, as if it had left and come back in:

1. the *sender's* external endpoint: the mapping of its session if it has one,
   else its static 1:1 address (port kept), else a new session and mapping, as
   for any outbound packet (REQ-1..4);
2. the *target*: the static host behind a static external address (nothing is
   filtered or kept), or the internal endpoint of the mapping X':x'. There the
   packet comes "from" the sender's external endpoint, so the mapping's filter
   applies (``hairpin_filtering: apply``, REQ-8) or not (``bypass``), and the
   mapping records the sender as a session so the target's reply finds its way.

``hairpinning: external-source`` presents the sender's external endpoint as the
source (REQ-9a); ``internal-source`` leaves the internal one. The target's reply
is itself a hairpinned packet and goes back the same way.

ICMP echo (RFC 5508 section 3.1, with REQ-9 for hairpinning):

- an echo request to a *pool* address names no mapping (the identifier is the
  sender's, not a port of ours): a NAPT answers it itself, as the router owning
  that address does (a Linux box, every home router), with an echo reply sent
  back inside, whatever ``hairpinning`` says;
- an echo request to a *static 1:1* external address is hairpinned to the static
  host like any other packet: destination SX -> S (identifier kept); the source
  per ``hairpinning`` (external-source: the sender's ICMP mapping X':id', or its
  own static address with id kept; internal-source: unchanged; none: dropped);
- the static host's echo reply to that external source (X':id', or a static
  address) is hairpinned back (:func:`echo_reply`): to the requester's internal
  address and identifier, from S's static address. With internal-source the
  reply goes straight to the requester and never reaches the NAT.

ICMP errors about hairpinned packets are handled in :mod:`natlab.engine.icmp_errors`.

Both translations are the state's own transitions (find or open a session, filter,
admit), reached through a :class:`HairpinContext` that names just those.
"""

from __future__ import annotations

from typing import Mapping as Dict
from typing import Optional, Protocol, Union

from natlab.engine.checksum_deltas import ICMP, UDP, add_to_csum, add_to_udp_csum
from natlab.engine.counters import Counters
from natlab.engine.policy import HairpinFiltering, Hairpinning, Policy
from natlab.engine.table import Mapping, Session
from natlab.engine.types import Addresses, is_unicast
from natlab.engine.verdicts import Drop, DropReason, Event, Hairpin, Verdict
from natlab.packet.checksum import checksum, delta16, delta32, fold


class HairpinContext(Protocol):
    """What hairpinning needs of the NAT's state: lookups, and the session transitions
    an outbound and an inbound packet would cause."""

    by_flow: Dict[tuple, Session]
    by_external: Dict[tuple, Mapping]
    counters: Counters
    refresh_out: bool
    refresh_in: bool

    @property
    def policy(self) -> Policy: ...

    @property
    def addresses(self) -> Addresses: ...

    def touch(self, sess: Session, direction: int, flags: int, now: float, refresh: bool, events) -> None: ...

    def open_session(self, proto: int, x_addr: int, x_port: int, y_addr: int, y_port: int, flags: int,
                     now: float, events: list) -> Union[Session, Drop]: ...

    def admits(self, m: Mapping, y_addr: int) -> bool: ...

    def inbound_session(self, m: Mapping, y_addr: int, y_port: int, flags: int, now: float,
                        events: list) -> Union[Session, Drop]: ...

    def filtered(self, m: Mapping, y_addr: int, y_port: int, now: float, events) -> list[Event]: ...


def hairpin(ctx: HairpinContext, data, ihl, proto, x_addr, x_port, ext_addr, ext_port, flags, now, events) -> Verdict:
    """REQ-9: a UDP or TCP packet from X:x to one of our external endpoints turns back inside;
    so does an ICMP echo request (``x_port`` its identifier, ``ext_port`` 0) to a static
    1:1 external address."""
    mode = ctx.policy.hairpinning
    if mode is Hairpinning.NONE:
        return ctx.counters.drop(DropReason.HAIRPIN_DISABLED, events)
    events = [] if events is None else events
    sender = _sender_external(ctx, proto, x_addr, x_port, ext_addr, ext_port, flags, now, events)
    if sender.__class__ is Drop:
        return sender  # type: ignore[return-value]
    src_addr, src_port, m1 = sender  # type: ignore[misc]
    static_target = ctx.addresses.static_in.get(ext_addr)
    if static_target is not None:
        dst_addr, dst_port = static_target, (x_port if proto == ICMP else ext_port)  # an echo keeps its id
        m2 = None
    else:
        m2 = ctx.by_external.get((proto, ext_addr, ext_port))
        if m2 is None:
            return ctx.counters.drop(DropReason.NO_MAPPING, events)
        refused = _enter(ctx, m2, src_addr, src_port, flags, now, events)
        if refused is not None:
            return refused
        dst_addr, dst_port = m2.internal
    buf = bytearray(data)
    echo = proto == ICMP  # the identifier (offset 4) is both "ports"
    rewrite(buf, ihl, proto, 16, 4 if echo else 2, dst_addr, dst_port)
    if mode is Hairpinning.EXTERNAL_SOURCE:
        rewrite(buf, ihl, proto, 12, 4 if echo else 0, src_addr, src_port)
    if m1 is not None:
        m1.packets_out += 1
    if m2 is not None:
        m2.packets_in += 1
    ctx.counters.hairpinned += 1
    return Hairpin(buf, tuple(events))


def _sender_external(ctx: HairpinContext, proto, x_addr, x_port, ext_addr, ext_port, flags, now, events):
    """(X', x', mapping or None) the sender appears as, or a Drop."""
    sess = ctx.by_flow.get((proto, x_addr, x_port, ext_addr, ext_port))
    if sess is not None:
        ctx.touch(sess, 1, flags, now, ctx.refresh_out, events)
        m = sess.mapping
        return m.external.addr, m.external.port, m
    static = ctx.addresses.static_out.get(x_addr)
    if static is not None:
        return static, x_port, None  # static 1:1: the address changes, the port stays
    sess = ctx.open_session(proto, x_addr, x_port, ext_addr, ext_port, flags, now, events)
    if sess.__class__ is Drop:
        return sess
    m = sess.mapping
    return m.external.addr, m.external.port, m


def _enter(ctx: HairpinContext, m2: Mapping, src_addr: int, src_port: int, flags, now, events) -> Optional[Verdict]:
    """The packet reaches mapping ``m2`` from (src_addr, src_port): filter it (REQ-8) unless
    ``hairpin_filtering: bypass``, and keep the sender as one of its sessions. None: admitted."""
    back = m2.sessions.get((src_addr, src_port))
    if back is not None:
        ctx.touch(back, 2, flags, now, ctx.refresh_in, events)
        return None
    bypass = ctx.policy.hairpin_filtering is HairpinFiltering.BYPASS
    if not bypass and not ctx.admits(m2, src_addr):
        return ctx.counters.drop(DropReason.FILTERED, ctx.filtered(m2, src_addr, src_port, now, events))
    made = ctx.inbound_session(m2, src_addr, src_port, flags, now, events)
    if made.__class__ is Drop:
        return made  # type: ignore[return-value]
    return None


def echo_reply(ctx: HairpinContext, data, ihl: int, s_addr: int, ext_addr: int, ident: int, now: float,
               events) -> Verdict:
    """An echo reply from inside to one of our external addresses: a static host answering
    a hairpinned echo request (REQ-9). It turns back to the requester's internal address
    and identifier (its ICMP mapping ``ext_addr``:``ident``, or the static host behind
    ``ext_addr``), from the replier's static address."""
    if ctx.policy.hairpinning is Hairpinning.NONE:
        return ctx.counters.drop(DropReason.HAIRPIN_DISABLED, events)
    src_addr = ctx.addresses.static_out.get(s_addr)
    if src_addr is None:  # only a static host is reached by a hairpinned echo request
        return ctx.counters.drop(DropReason.NO_MAPPING, events)
    m = None
    dst_addr = ctx.addresses.static_in.get(ext_addr)
    dst_ident = ident
    if dst_addr is None:
        m = ctx.by_external.get((ICMP, ext_addr, ident))
        sess = m.sessions.get((src_addr, 0)) if m is not None else None
        if sess is None:  # no request of the mapping's host went to this static address
            return ctx.counters.drop(DropReason.NO_MAPPING, events)
        events = [] if events is None else events
        ctx.touch(sess, 2, 0, now, ctx.refresh_in, events)
        dst_addr, dst_ident = m.internal
    buf = bytearray(data)
    rewrite(buf, ihl, ICMP, 16, 4, dst_addr, dst_ident)
    rewrite(buf, ihl, ICMP, 12, 4, src_addr, dst_ident)
    if m is not None:
        m.packets_in += 1
    ctx.counters.hairpinned += 1
    return Hairpin(buf, tuple(events) if events else ())


def answer_echo(counters: Counters, data, ihl: int, total: int, events) -> Verdict:
    """An echo request from inside to a pool address: the NAT answers it as the router does."""
    if not is_unicast(int.from_bytes(data[12:16], "big")):
        return counters.drop(DropReason.MALFORMED, events)  # never answer a broadcast source
    buf = bytearray(data[:total])
    buf[12:16], buf[16:20] = data[16:20], data[12:16]
    buf[8] = 64  # a fresh TTL, as the router's own reply has
    buf[10:12] = b"\x00\x00"
    buf[10:12] = checksum(buf[:ihl]).to_bytes(2, "big")
    buf[ihl] = 0  # echo reply
    buf[ihl + 2:ihl + 4] = b"\x00\x00"
    buf[ihl + 2:ihl + 4] = checksum(buf[ihl:total]).to_bytes(2, "big")
    counters.answered += 1
    return Hairpin(buf, tuple(events) if events else ())


def rewrite(buf: bytearray, ihl: int, proto: int, addr_off: int, port_off: int, addr: int, port: int) -> None:
    """Set one address (12: source, 16: destination) and its port (or ICMP identifier at
    ``port_off`` 4), fixing the IPv4 and transport checksums incrementally (RFC 1624)."""
    old_addr = int.from_bytes(buf[addr_off:addr_off + 4], "big")
    at = ihl + port_off
    old_port = (buf[at] << 8) | buf[at + 1]
    ip_delta = fold(delta32(old_addr, addr))
    buf[addr_off:addr_off + 4] = addr.to_bytes(4, "big")
    add_to_csum(buf, 10, ip_delta)
    buf[at] = port >> 8
    buf[at + 1] = port & 0xFF
    port_delta = delta16(old_port, port)
    if proto == ICMP:
        add_to_csum(buf, ihl + 2, fold(port_delta))
    elif proto == UDP:
        add_to_udp_csum(buf, ihl + 6, fold(ip_delta + port_delta))
    else:
        add_to_csum(buf, ihl + 16, fold(ip_delta + port_delta))
