"""The NAT engine: bytes, a side and ``now`` in; a verdict and events out.

Theory of operation
-------------------
``process`` parses just enough of an IPv4 packet to find its flow, then:

- from the inside, to one of our external addresses (pool or static 1:1): hairpin
  (RFC 4787 REQ-9, :mod:`natlab.engine.hairpin`); an echo request to a pool
  address is answered by the NAT itself (it is the router's own address), one to
  a static 1:1 address is hairpinned to the static host, whose echo reply is
  hairpinned back;
- from the inside: find the flow's session, or make one (and a mapping, REQ-1..4),
  rewrite the source (address, port or ICMP identifier) in place;
- from the outside: find the mapping of the destination, let filtering (REQ-8)
  admit or refuse the remote endpoint, rewrite the destination.

The engine holds no table of its own: :class:`~natlab.engine.state.NatState`
owns mappings, sessions and timers, and the engine asks it to open, touch and
filter. Established flows cost one dict probe and a rewrite with per-mapping
checksum deltas (RFC 1624); for that path the engine keeps direct references to
the state's two lookup dicts, its counters and its refresh methods, and passes
the flow as positional ints rather than a ``FlowKey`` (no allocation per packet). ICMP errors (RFC 5508), fragments (REQ-14), unsolicited
SYNs (RFC 5382 REQ-4), Linux's inbound-first remapping (``inbound_first``) and
live changes (:mod:`natlab.engine.live`) live in their own modules. Sessions
are bounded (``limits.max_sessions``, ``max_sessions_per_mapping``): a packet
that would open one more is a counted ``session-limit`` drop. Timers are lazy (see
:mod:`natlab.engine.table`); anything due is expired before a packet is handled,
so results never depend on how punctually the caller runs ``expire``.
"""

from __future__ import annotations

import random
import struct
from typing import Optional, Sequence

from natlab.engine import fastpath, fragments, hairpin, icmp_errors, live, peer_mappings, port_mappings, static_nat
from natlab.engine.checksum_deltas import ICMP, TCP, UDP, add_to_csum, rewrite_l4
from natlab.engine.counters import Counters
from natlab.engine.policy import Policy
from natlab.engine.ports import checked_pool
from natlab.engine.state import NatState
from natlab.engine.table import ACK, RST, SYN
from natlab.engine.types import AddressLike, Addresses, Endpoint, Side, to_str
from natlab.engine.verdicts import Drop, DropReason, Event, Forward, Tick, Verdict
from natlab.engine.views import MappingView

_IPV4 = struct.Struct("!BBHHHBBHII")
_PORTS = struct.Struct("!HH")
INSIDE, OUTSIDE = Side.INSIDE, Side.OUTSIDE
_MIN_L4 = {UDP: 8, TCP: 20, ICMP: 8}


class Engine:
    """A sans-I/O NAT over ``pool`` (external addresses) and a seeded ``rng``: same seed,
    same mappings. ``refresh_events`` also reports every refresh (costly)."""

    def __init__(
        self,
        policy: Policy,
        pool: Sequence[AddressLike],
        rng: random.Random,
        *,
        refresh_events: bool = False,
    ) -> None:
        self._state = st = NatState(policy, checked_pool(pool), rng, refresh_events)
        # The per-packet path's references into the state (the objects never change):
        self._by_flow = st.by_flow
        self._by_external = st.by_external
        self._timers = st.timers
        self._counters = st.counters
        self._syns = st.syns
        self._touch = st.touch
        self._timeout = st.timeout
        self._arm = st.arm
        self._refresh_events = refresh_events
        self._configured()

    def _configured(self) -> None:
        """Re-read what the per-packet path needs of the configuration (after any change)."""
        st = self._state
        a = st.addresses
        self._pool_set, self._static_in, self._static_out = a.pool_set, a.static_in, a.static_out
        self._refresh_out, self._refresh_in = st.refresh_out, st.refresh_in
        self._remap_inbound_first = st.remap_inbound_first

    # -- configuration -----------------------------------------------------------
    def reconfigure(self, policy: Policy, now: float) -> Tick:
        """Apply a new policy live (:func:`natlab.engine.live.reconfigure`)."""
        tick = live.reconfigure(self._state, policy, now)
        self._configured()
        return tick

    def set_pool(self, pool: Sequence[AddressLike], now: float) -> Tick:
        """Change the external addresses; mappings on withdrawn addresses end."""
        tick = live.set_pool(self._state, pool, now)
        self._configured()
        return tick

    def flush(self, now: float) -> Tick:
        """A reboot: every dynamic mapping, held SYN and fragment is forgotten."""
        tick = live.flush(self._state, now)
        self._configured()
        return tick

    # -- packets -------------------------------------------------------------------
    def process(self, data: bytes | bytearray, side: Side, now: float) -> Verdict:
        """Translate one raw IPv4 packet that arrived on ``side``. Never raises on bad input."""
        events: Optional[list[Event]] = None
        emits: list = []
        timers = self._timers
        if timers and timers[0][0] <= now:
            events = []
            self._state.expire_due(now, events, emits)
        try:
            verdict = self._dispatch(data, side, now, events)
        except (IndexError, ValueError, struct.error):
            verdict = self._counters.drop(DropReason.MALFORMED, events)
        if emits:  # answers that fell due before this packet (e.g. held SYNs) are not lost
            return verdict._replace(emits=tuple(emits) + verdict.emits)
        return verdict

    def _dispatch(self, data: bytes | bytearray, side: Side, now: float, events: Optional[list]) -> Verdict:
        n = len(data)
        if n < 20:
            return self._counters.drop(DropReason.MALFORMED, events)
        vihl, _tos, total, ident, frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(data)
        ihl = (vihl & 15) << 2
        if vihl >> 4 != 4 or ihl < 20 or total < ihl or total > n:
            return self._counters.drop(DropReason.MALFORMED, events)
        if frag & 0x3FFF:
            return fragments.handle(self._state, self._transport, data, ihl, total, frag, ident, proto, src, dst,
                                    side, now, events)
        return self._transport(data, ihl, total, proto, src, dst, side, now, events)

    def _transport(self, data, ihl, total, proto, src, dst, side, now, events) -> Verdict:
        """Translate by the transport header (whole packets and first fragments)."""
        if proto == UDP or proto == TCP:
            if total < ihl + _MIN_L4[proto]:
                return self._counters.drop(DropReason.MALFORMED, events)
            sport, dport = _PORTS.unpack_from(data, ihl)
            flags = data[ihl + 13] if proto == TCP else 0
            if side is INSIDE:
                return self._outbound(data, ihl, proto, src, sport, dst, dport, 0, flags, now, events)
            return self._inbound(data, ihl, proto, src, sport, dst, dport, 2, flags, now, events)
        st = self._state
        if proto == ICMP:
            if total < ihl + 8:
                return self._counters.drop(DropReason.MALFORMED, events)
            itype = data[ihl]
            if itype == 8 or itype == 0:
                if not st.policy.icmp.echo:
                    return self._counters.drop(DropReason.ICMP_DISABLED, events)
                ident = (data[ihl + 4] << 8) | data[ihl + 5]
                if side is INSIDE and itype == 8:
                    if dst in self._pool_set:
                        return hairpin.answer_echo(self._counters, data, ihl, total, events)
                    return self._outbound(data, ihl, ICMP, src, ident, dst, 0, 4, 0, now, events)
                if side is OUTSIDE and itype == 0:
                    return self._inbound(data, ihl, ICMP, src, 0, dst, ident, 4, 0, now, events)
                if side is INSIDE and (dst in self._pool_set or dst in self._static_in):
                    return hairpin.echo_reply(st, data, ihl, src, dst, ident, now, events)
            elif itype in icmp_errors.ERROR_TYPES:
                if not st.policy.icmp.errors:
                    return self._counters.drop(DropReason.ICMP_DISABLED, events)
                return icmp_errors.translate(st, data, ihl, total, side, now, events)
        return static_nat.translate_or_drop(st.addresses, self._counters, data, ihl, proto, src, dst, side, events)

    def _outbound(self, data, ihl, proto, x_addr, x_port, y_addr, y_port, port_off, flags, now, events) -> Verdict:
        """X:x -> Y:y from inside. The flow comes as positional ints, not a ``FlowKey``: this
        is the per-packet path, and the probe tuple is the only thing it allocates before
        the rewrite. ``port_off`` is where the rewritten port is (0, or 4: an ICMP identifier)."""
        if y_addr in self._pool_set or y_addr in self._static_in:  # ICMP here: an echo to a static address
            return hairpin.hairpin(self._state, data, ihl, proto, x_addr, x_port, y_addr, y_port, flags, now, events)
        sess = self._by_flow.get((proto, x_addr, x_port, y_addr, y_port))
        if sess is None:
            if x_addr in self._static_out:  # after by_flow: a forward's replies keep the forward
                return static_nat.translate(self._counters, data, ihl, proto, 12, self._static_out[x_addr], events,
                                            INSIDE)
            events = [] if events is None else events
            sess = self._state.open_session(proto, x_addr, x_port, y_addr, y_port, flags, now, events)
            if sess.__class__ is Drop:
                return sess  # type: ignore[return-value]
        elif proto == TCP or not sess.seen & 1 or self._refresh_events:
            self._touch(sess, 1, flags, now, self._refresh_out, events)
        elif self._refresh_out:  # NatState.touch, inlined for an established UDP or ICMP flow
            sess.expires = deadline = now + self._timeout(sess, now)
            if deadline < sess.armed:
                self._arm(sess)
        m = sess.mapping
        buf = bytearray(data)
        buf[12:16] = m.ext_addr_bytes
        add_to_csum(buf, 10, m.ip_out)
        rewrite_l4(buf, ihl, proto, port_off, m.external.port, m.l4_out)
        m.packets_out += 1
        self._counters.translated_out += 1
        if proto == TCP and flags & SYN and self._syns:
            self._syns.cancel(m.external.addr, m.external.port, y_addr, y_port)
        return Forward(buf, tuple(events) if events else ())

    def _inbound(self, data, ihl, proto, y_addr, y_port, ext_addr, ext_port, port_off, flags, now, events) -> Verdict:
        """Y:y -> X':x' from outside; positional ints for the same reason as :meth:`_outbound`."""
        m = self._by_external.get((proto, ext_addr, ext_port))
        if m is None:
            return self._unmapped(data, ihl, proto, y_addr, y_port, ext_addr, ext_port, flags, now, events)
        sess = m.sessions.get((y_addr, y_port))
        if sess is None:
            st = self._state
            if not st.admits(m, y_addr, y_port):
                if self._remap_inbound_first:
                    st.claim(proto, flags, ext_addr, ext_port, y_addr, y_port, now)
                events = st.filtered(m, y_addr, y_port, now, events)
                if proto == TCP and flags & SYN and not flags & (ACK | RST):
                    st.hold_syn(data, ext_addr, ext_port, y_addr, y_port, now)
                return self._counters.drop(DropReason.FILTERED, events)
            events = [] if events is None else events
            sess = st.inbound_session(m, y_addr, y_port, flags, now, events)
            if sess.__class__ is Drop:
                return sess  # type: ignore[return-value]
        elif proto == TCP or not sess.seen & 2 or self._refresh_events:
            self._touch(sess, 2, flags, now, self._refresh_in, events)
        elif self._refresh_in:  # NatState.touch, inlined
            sess.expires = deadline = now + self._timeout(sess, now)
            if deadline < sess.armed:
                self._arm(sess)
        buf = bytearray(data)
        buf[16:20] = m.int_addr_bytes
        add_to_csum(buf, 10, m.ip_in)
        rewrite_l4(buf, ihl, proto, port_off, m.internal.port, m.l4_in)
        m.packets_in += 1
        self._counters.translated_in += 1
        return Forward(buf, tuple(events) if events else ())

    def _unmapped(self, data, ihl, proto, y_addr, y_port, ext_addr, ext_port, flags, now, events) -> Verdict:
        """Inbound to an external endpoint no mapping holds: static 1:1 NAT, or a drop (which
        may leave an unreplied entry, or hold an unsolicited SYN's answer)."""
        if ext_addr not in self._pool_set and ext_addr not in self._static_in:
            return self._counters.drop(DropReason.NOT_OURS, events)  # not ours to answer for
        st = self._state
        internal = self._static_in.get(ext_addr)
        if internal is not None:
            # The client now uses the static address: a forward's session on the 5-tuple ends.
            st.end_forward_session(proto, internal, ext_port, y_addr, y_port)
            return static_nat.translate(self._counters, data, ihl, proto, 16, internal, events, OUTSIDE)
        if self._remap_inbound_first:
            st.claim(proto, flags, ext_addr, ext_port, y_addr, y_port, now)
        if proto == TCP and flags & SYN and not flags & (ACK | RST):
            st.hold_syn(data, ext_addr, ext_port, y_addr, y_port, now)
        return self._counters.drop(DropReason.NO_MAPPING, events)

    # -- explicit port mappings (NAT-PMP, PCP, UPnP IGD: natlab.engine.port_mappings) ----
    def map_port(self, kind: str, proto: int, internal: Endpoint, external_port: int, until: Optional[float],
                 filters: Sequence = (), now: float = 0.0, description: str = "") -> Tick:
        """Install or refresh an explicit mapping of ``external_port`` on the first pool address."""
        return Tick(tuple(port_mappings.map_port(self._state, kind, proto, internal, external_port, until,
                                                 filters, now, description)))

    def unmap_port(self, proto: int, external_port: int, now: float) -> Tick:
        """Remove the explicit mapping of ``external_port``, if there is one."""
        return Tick(tuple(port_mappings.unmap_port(self._state, proto, external_port, now)))

    def peer(self, proto: int, internal: Endpoint, remote: Endpoint, suggested_port: int, until: Optional[float],
             nonce: bytes, now: float) -> tuple["peer_mappings.PeerAnswer", Tick]:
        """A PCP PEER: make or hold the 5-tuple's mapping (:mod:`natlab.engine.peer_mappings`)."""
        answer, events = peer_mappings.peer(self._state, proto, internal, remote, suggested_port, until, nonce, now)
        return answer, Tick(tuple(events))

    def port_free(self, proto: int, port: int) -> bool:
        """Whether ``port`` on the first pool address may be mapped (no mapping, forward or port block holds it)."""
        return port_mappings.is_free(self._state, proto, port)

    def port_mapping_counters(self) -> dict[str, int]:
        """Explicit mappings created, refreshed, deleted, expired, flushed, and conflicts by kind."""
        return {"active": len(self._state.port_maps), **self._state.port_maps.counters}

    # -- fast paths (a cache that repeats decisions: natlab.engine.fastpath) -----------
    def fast_entry(self, data: bytes | bytearray, side: Side, now: float,
                   quantum: float) -> Optional["fastpath.FastEntry"]:
        """After :meth:`process` forwarded ``data`` (the bytes as they arrived): the entry a
        fast path may use for the next packets of that 5-tuple and direction, or None."""
        return fastpath.entry_for(self._state, data, side, now, quantum)

    def fold_fast(self, entry: "fastpath.FastEntry", packets: int, last_seen: float) -> None:
        """Count what a fast path rewrote for ``entry`` and refresh its session as of ``last_seen``."""
        fastpath.fold(self._state, entry, packets, last_seen)

    # -- time ----------------------------------------------------------------------
    def expire(self, now: float) -> Tick:
        """End every session, mapping, held SYN and fragment due by ``now``."""
        events: list[Event] = []
        emits: list = []
        self._state.expire_due(now, events, emits)
        return Tick(tuple(events), tuple(emits))

    def next_deadline(self) -> Optional[float]:
        """When :meth:`expire` next has work (possibly a little early), or None."""
        return self._state.next_deadline()

    # -- reporting (read-only) ---------------------------------------------------------
    def mappings(self, now: Optional[float] = None) -> tuple[MappingView, ...]:
        """A snapshot of the mapping table, sorted by protocol and internal endpoint."""
        return self._state.mappings(now)

    @property
    def policy(self) -> Policy:
        """The policy in force (:meth:`reconfigure` changes it)."""
        return self._state.policy

    @property
    def counters(self) -> Counters:
        """The engine's counters; read them with ``counters.snapshot()``."""
        return self._counters

    @property
    def external_addresses(self) -> tuple[str, ...]:
        """Every address the outside must route to this NAT: the pool and static externals."""
        return tuple(to_str(a) for a in self._state.addresses.external)

    @property
    def addresses(self) -> Addresses:
        """The external addresses the NAT owns, as ints: ``pool`` (ordered), ``pool_set``,
        ``static_in``/``static_out`` and ``owns(address)``. A value; a new one after
        :meth:`set_pool` or :meth:`reconfigure`."""
        return self._state.addresses

    def owns(self, address: int) -> bool:
        """Whether the outside must route ``address`` (an int) to this NAT: pool or static external."""
        return address in self._pool_set or address in self._static_in

    def port_block_state(self, address: int, first_port: int) -> str:
        """"free", "heating" or "cooling": the CGN port block at ``first_port`` on the external
        ``address`` (``port_block``; RFC 6888 REQ-4)."""
        return self._state.allocator.block_state(address, first_port)

    def port_blocks(self, internal_address: int) -> list[tuple[int, int]]:
        """(external address, first port) of every port block ``internal_address`` holds."""
        return self._state.allocator.blocks_of(internal_address)

    def table_sizes(self) -> dict[str, int]:
        """Entries held, by table: mappings, sessions, timers (heap entries, stale ones
        included), held_syns, fragments, claims. For memory-bound checks and reports."""
        return self._state.sizes()
