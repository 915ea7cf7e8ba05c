"""The NAT engine: bytes, a side and ``now`` in; a verdict and events out.

Theory of operation
-------------------
``process`` parses just enough of an IPv4 packet to find its flow, then:

- from the inside, to one of our external addresses (pool or static 1:1): hairpin
  (RFC 4787 REQ-9, :mod:`natlab.engine.hairpin`); an echo request to a pool
  address is answered by the NAT itself;
- from the inside: find the flow's session, or make one (and a mapping, REQ-1..4),
  rewrite the source (address, port or ICMP identifier) in place;
- from the outside: find the mapping of the destination, let filtering (REQ-8)
  admit or refuse the remote endpoint, rewrite the destination.

Established flows cost one dict probe and a rewrite with per-mapping checksum
deltas (RFC 1624). ICMP errors (RFC 5508), fragments (REQ-14), unsolicited
SYNs (RFC 5382 REQ-4), Linux's inbound-first remapping (``inbound_first``) and
live changes (:mod:`natlab.engine.live`) live in their own modules. Sessions
are bounded (``limits.max_sessions``, ``max_sessions_per_mapping``): a packet
that would open one more is a counted ``session-limit`` drop. Timers are lazy (see
:mod:`natlab.engine.table`); anything due is expired before a packet is handled,
so results never depend on how punctually the caller runs ``expire``.
"""

from __future__ import annotations

import heapq
import itertools
import random
import struct
from typing import Optional, Sequence

from natlab.engine import fragments, hairpin, icmp_errors, inbound_first, live, static_nat, syn_hold
from natlab.engine.checksum_deltas import ICMP, TCP, UDP, add_to_csum, rewrite_l4
from natlab.engine.counters import Counters
from natlab.engine.policy import Dependency, InboundFirst, Policy, Refresh
from natlab.engine.ports import PortAllocator, checked_pool
from natlab.engine.table import ACK, RST, SYN, Mapping, Session, TcpState, decrement, restarts, tcp_next_state
from natlab.engine.types import AddressLike, Endpoint, Proto, Side, to_int, to_str
from natlab.engine.verdicts import Drop, DropReason, Event, EventKind, Forward, Tick, Verdict
from natlab.engine.views import MappingView, snapshot

_IPV4 = struct.Struct("!BBHHHBBHII")
_PORTS = struct.Struct("!HH")
INSIDE, OUTSIDE = Side.INSIDE, Side.OUTSIDE
_EIM, _ADM = Dependency.ENDPOINT_INDEPENDENT, Dependency.ADDRESS_DEPENDENT
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
        self.rng = rng
        self.refresh_events = refresh_events
        self.counters = Counters()
        self.by_flow: dict[tuple, Session] = {}
        self.by_external: dict[tuple[int, int, int], Mapping] = {}
        self.by_key: dict[tuple, Mapping] = {}
        self.forwards_by_internal: dict[tuple[int, int, int], Mapping] = {}
        self.per_host: dict[int, int] = {}
        self.heap: list[tuple[float, int, object]] = []
        self.seq = itertools.count()
        self.syns = syn_hold.SynHold()
        self.frags = fragments.FragmentTable()
        self.pool = checked_pool(pool)
        self.allocator = PortAllocator(policy, self.pool, rng, self.counters)
        self.claims = inbound_first.Claims()
        self._set_policy(policy)

    # -- configuration -----------------------------------------------------------
    def _set_policy(self, policy: Policy) -> None:
        self.policy = policy
        self.allocator.policy = policy
        self.pool_set = frozenset(self.pool)
        t = policy.timeouts
        self.t_udp, self.t_udp_unreplied = t.udp, t.udp_unreplied or t.udp
        self.t_tcp_est, self.t_tcp_trans, self.t_icmp = t.tcp_established, t.tcp_transitory, t.icmp
        self.t_tcp_rst = t.tcp_rst or t.tcp_transitory
        self.t_stream_after = t.udp_stream_after
        self.max_sessions = policy.limits.max_sessions or 0
        self.max_per_mapping = policy.limits.max_sessions_per_mapping or 0
        self.remap_inbound_first = policy.inbound_first is InboundFirst.REMAP
        self.refresh_out = policy.refresh is not Refresh.INBOUND
        self.refresh_in = policy.refresh is not Refresh.OUTBOUND
        self.static_out = {to_int(s.internal): to_int(s.external) for s in policy.static}
        self.static_in = {ext: internal for internal, ext in self.static_out.items()}
        self._install_forwards(0.0)

    def _install_forwards(self, now: float) -> None:
        for m in list(self.forwards_by_internal.values()):
            self.by_external.pop((m.proto, m.external.addr, m.external.port), None)
        self.forwards_by_internal.clear()
        for m in static_nat.forward_mappings(self.policy, self.pool[0], now):
            self.by_external[(m.proto, m.external.addr, m.external.port)] = m
            self.forwards_by_internal[(m.proto, m.internal.addr, m.internal.port)] = m

    def reconfigure(self, policy: Policy, now: float) -> Tick:
        """Apply a new policy live (:func:`natlab.engine.live.reconfigure`)."""
        return live.reconfigure(self, policy, now)

    def set_pool(self, pool: Sequence[AddressLike], now: float) -> Tick:
        """Change the external addresses; mappings on withdrawn addresses end."""
        return live.set_pool(self, pool, now)

    def flush(self, now: float) -> Tick:
        """A reboot: every dynamic mapping, held SYN and fragment is forgotten."""
        return live.flush(self, now)

    # -- packets -------------------------------------------------------------------
    def process(self, data: bytes | bytearray, side: Side, now: float) -> Verdict:
        """Translate one raw IPv4 packet that arrived on ``side``. Never raises on bad input."""
        events: Optional[list[Event]] = None
        emits: list = []
        if self.heap and self.heap[0][0] <= now:
            events = []
            self._expire_due(now, events, emits)
        try:
            verdict = self._dispatch(data, side, now, events)
        except (IndexError, ValueError, struct.error):
            verdict = self._drop(DropReason.MALFORMED, events)
        if emits:  # answers that fell due before this packet (e.g. held SYNs) are not lost
            return verdict._replace(emits=tuple(emits) + verdict.emits)
        return verdict

    def _dispatch(self, data: bytes | bytearray, side: Side, now: float, events: Optional[list]) -> Verdict:
        n = len(data)
        if n < 20:
            return self._drop(DropReason.MALFORMED, events)
        vihl, _tos, total, ident, frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(data)
        ihl = (vihl & 15) << 2
        if vihl >> 4 != 4 or ihl < 20 or total < ihl or total > n:
            return self._drop(DropReason.MALFORMED, events)
        if frag & 0x3FFF:
            return fragments.handle(self, data, ihl, total, frag, ident, proto, src, dst, side, now, events)
        return self._transport(data, ihl, total, proto, src, dst, side, now, events)

    def _transport(self, data, ihl, total, proto, src, dst, side, now, events) -> Verdict:
        """Translate by the transport header (whole packets and first fragments)."""
        if proto == UDP or proto == TCP:
            if total < ihl + _MIN_L4[proto]:
                return self._drop(DropReason.MALFORMED, events)
            sport, dport = _PORTS.unpack_from(data, ihl)
            flags = data[ihl + 13] if proto == TCP else 0
            if side is INSIDE:
                return self._outbound(data, ihl, proto, src, sport, dst, dport, 0, flags, now, events)
            return self._inbound(data, ihl, proto, src, sport, dst, dport, 2, flags, now, events)
        if proto == ICMP:
            if total < ihl + 8:
                return self._drop(DropReason.MALFORMED, events)
            itype = data[ihl]
            if itype == 8 or itype == 0:
                if not self.policy.icmp.echo:
                    return self._drop(DropReason.ICMP_DISABLED, events)
                ident = (data[ihl + 4] << 8) | data[ihl + 5]
                if side is INSIDE and itype == 8:
                    if dst in self.pool_set:
                        return hairpin.answer_echo(self, data, ihl, total, events)
                    return self._outbound(data, ihl, ICMP, src, ident, dst, 0, 4, 0, now, events)
                if side is OUTSIDE and itype == 0:
                    return self._inbound(data, ihl, ICMP, src, 0, dst, ident, 4, 0, now, events)
                return static_nat.translate_or_drop(self, data, ihl, proto, src, dst, side, events)
            if itype in icmp_errors.ERROR_TYPES:
                if not self.policy.icmp.errors:
                    return self._drop(DropReason.ICMP_DISABLED, events)
                return icmp_errors.translate(self, data, ihl, total, side, now, events)
            return static_nat.translate_or_drop(self, data, ihl, proto, src, dst, side, events)
        return static_nat.translate_or_drop(self, data, ihl, proto, src, dst, side, events)

    def _outbound(self, data, ihl, proto, x_addr, x_port, y_addr, y_port, port_off, flags, now, events) -> Verdict:
        if y_addr in self.pool_set or y_addr in self.static_in:
            if proto == ICMP:
                return self._drop(DropReason.HAIRPIN_DISABLED, events)
            return hairpin.hairpin(self, data, ihl, proto, x_addr, x_port, y_addr, y_port, flags, now, events)
        sess = self.by_flow.get((proto, x_addr, x_port, y_addr, y_port))
        if sess is None:
            if x_addr in self.static_out:  # after by_flow: a forward's replies keep the forward
                return static_nat.translate(self, data, ihl, proto, 12, self.static_out[x_addr], events, INSIDE)
            events = [] if events is None else events
            sess = self._open_session(proto, x_addr, x_port, y_addr, y_port, flags, now, events)
            if sess.__class__ is Drop:
                return sess  # type: ignore[return-value]
        elif proto == TCP or not sess.seen & 1 or self.refresh_events:
            self._touch(sess, 1, flags, now, self.refresh_out, events)
        elif self.refresh_out:
            sess.expires = deadline = now + self._timeout(sess, now)
            if deadline < sess.armed:
                self._arm(sess)
        m = sess.mapping
        buf = bytearray(data)
        buf[12:16] = m.ext_addr_bytes
        add_to_csum(buf, 10, m.ip_out)
        rewrite_l4(buf, ihl, proto, port_off, m.external.port, m.l4_out)
        m.packets_out += 1
        self.counters.translated_out += 1
        if proto == TCP and flags & SYN and self.syns:
            self.syns.cancel(m.external.addr, m.external.port, y_addr, y_port)
        return Forward(buf, tuple(events) if events else ())

    def _inbound(self, data, ihl, proto, y_addr, y_port, ext_addr, ext_port, port_off, flags, now, events) -> Verdict:
        m = self.by_external.get((proto, ext_addr, ext_port))
        if m is None:
            if ext_addr not in self.pool_set and ext_addr not in self.static_in:
                return self._drop(DropReason.NOT_OURS, events)  # not ours to answer for
            if ext_addr in self.static_in:
                return static_nat.inbound(self, data, ihl, proto, y_addr, y_port, ext_port, self.static_in[ext_addr], events)
            if self.remap_inbound_first and proto == UDP:
                inbound_first.claim(self, ext_addr, ext_port, y_addr, y_port, now)
            if proto == TCP and flags & SYN and not flags & (ACK | RST):
                return syn_hold.unsolicited(self, data, ext_addr, ext_port, y_addr, y_port, now, events,
                                            DropReason.NO_MAPPING)
            return self._drop(DropReason.NO_MAPPING, events)
        sess = m.sessions.get((y_addr, y_port))
        if sess is None:
            if not self._admits(m, y_addr):
                if self.remap_inbound_first and proto == UDP:
                    inbound_first.claim(self, ext_addr, ext_port, y_addr, y_port, now)
                return self._filtered(m, data, y_addr, y_port, flags, now, events)
            events = [] if events is None else events
            sess = self._inbound_session(m, y_addr, y_port, flags, now, events)
            if sess.__class__ is Drop:
                return sess  # type: ignore[return-value]
        elif proto == TCP or not sess.seen & 2 or self.refresh_events:
            self._touch(sess, 2, flags, now, self.refresh_in, events)
        elif self.refresh_in:
            sess.expires = deadline = now + self._timeout(sess, now)
            if deadline < sess.armed:
                self._arm(sess)
        buf = bytearray(data)
        buf[16:20] = m.int_addr_bytes
        add_to_csum(buf, 10, m.ip_in)
        rewrite_l4(buf, ihl, proto, port_off, m.internal.port, m.l4_in)
        m.packets_in += 1
        self.counters.translated_in += 1
        return Forward(buf, tuple(events) if events else ())

    # -- filtering (REQ-8) -----------------------------------------------------------
    def _admits(self, m: Mapping, y_addr: int) -> bool:
        """Would filtering admit a packet from a remote with no session yet? (APDF: never.)"""
        f = self.policy.filtering
        if m.kind != "dynamic" or f is _EIM:
            return True
        if f is _ADM:
            return m.addr_refs.get(y_addr, 0) > 0
        return False

    def _filtered(self, m, data, y_addr, y_port, flags, now, events) -> Verdict:
        ev = Event(EventKind.FILTERED, now, m.describe().split()[0], str(m.internal), str(m.external),
                   f"{to_str(y_addr)}:{y_port}", DropReason.FILTERED.value, self.policy.filtering.value)
        events = (events or []) + [ev]
        if m.proto == TCP and flags & SYN and not flags & (ACK | RST) and data:
            return syn_hold.unsolicited(self, data, m.external.addr, m.external.port, y_addr, y_port,
                                        now, events, DropReason.FILTERED)
        return self._drop(DropReason.FILTERED, events)

    # -- sessions and mappings ---------------------------------------------------------
    def _open_session(self, proto, x_addr, x_port, y_addr, y_port, flags, now, events):
        """A new outbound session, on an existing mapping or a new one (REQ-1..4)."""
        if proto == TCP and flags & 0x04:
            return self._drop(DropReason.NO_MAPPING, events)
        if self.max_sessions and self.counters.sessions_active >= self.max_sessions:
            return self._drop(DropReason.SESSION_LIMIT, events)
        m = self.forwards_by_internal.get((proto, x_addr, x_port))
        if m is None:
            dep = self.policy.mapping
            key = (proto, x_addr, x_port) if dep is _EIM else (
                (proto, x_addr, x_port, y_addr) if dep is _ADM else (proto, x_addr, x_port, y_addr, y_port))
            m = self.by_key.get(key)
            if m is None:
                made = self._new_mapping(proto, x_addr, x_port, y_addr, y_port, key, now, events)
                if made.__class__ is Drop:
                    return made
                m = made
            if self.claims and proto == UDP:
                m = inbound_first.avoid_clash(self, m, y_addr, y_port, now, events)
                if m.__class__ is Drop:
                    return m
        if self.max_per_mapping and len(m.sessions) >= self.max_per_mapping:
            return self._drop(DropReason.SESSION_LIMIT, events)
        sess = self._new_session(m, y_addr, y_port, now)
        self._touch(sess, 1, flags, now, True, events)
        self._arm(sess)
        return sess

    def _inbound_session(self, m: Mapping, y_addr: int, y_port: int, flags: int, now: float, events):
        """A session opened from outside (admitted by filtering), or a Drop at a session
        limit. Unless inbound packets refresh (REQ-6), it may not outlive the mapping's
        current expiry."""
        if (self.max_sessions and self.counters.sessions_active >= self.max_sessions) or (
                self.max_per_mapping and len(m.sessions) >= self.max_per_mapping):
            return self._drop(DropReason.SESSION_LIMIT, events)
        cap = None if (self.refresh_in or m.kind != "dynamic") else m.expires
        sess = self._new_session(m, y_addr, y_port, now)
        self._touch(sess, 2, flags, now, cap is None, events)
        if cap is not None:
            sess.expires = cap
        self._arm(sess)
        return sess

    def _new_mapping(self, proto, x_addr, x_port, y_addr, y_port, key, now, events, taken=None, remote=None):
        """A new dynamic mapping for X:x, or a Drop; ``taken`` overrides which external
        endpoints count as in use, ``remote`` the mapping's endpoint-dependency label."""
        limits = self.policy.limits
        if limits.max_mappings and self.counters.mappings_active >= limits.max_mappings:
            return self._limit(proto, x_addr, x_port, now, events, f"limits.max_mappings "
                               f"({limits.max_mappings} in total) reached")
        if limits.max_mappings_per_host and self.per_host.get(x_addr, 0) >= limits.max_mappings_per_host:
            return self._limit(proto, x_addr, x_port, now, events, f"limits.max_mappings_per_host "
                               f"({limits.max_mappings_per_host} for {to_str(x_addr)}) reached")
        if taken is None:
            in_use = self.by_external.__contains__
            taken = lambda p, a, port: in_use((p, a, port))  # noqa: E731
        got = self.allocator.allocate(proto, x_addr, x_port, taken)
        if got is None:
            return self._drop(DropReason.PORT_EXHAUSTED, events)
        ext_addr, ext_port, evicts = got
        if events is None:
            events = []
        if evicts:
            old = self.by_external[(proto, ext_addr, ext_port)]
            if old.kind != "dynamic":
                self.allocator.release(ext_addr, ext_port, proto)
                return self._drop(DropReason.PORT_EXHAUSTED, events)
            self._remove_mapping(old, now, events, EventKind.MAPPING_EVICTED, "port overloaded")
            self.counters.mappings_evicted += 1
        if remote is None:
            dep = self.policy.mapping
            remote = "*" if dep is _EIM else (to_str(y_addr) if dep is _ADM else f"{to_str(y_addr)}:{y_port}")
        m = Mapping(proto, Endpoint(x_addr, x_port), Endpoint(ext_addr, ext_port), key, remote, now)
        self.by_key[key] = m
        self.by_external[(proto, ext_addr, ext_port)] = m
        self.per_host[x_addr] = self.per_host.get(x_addr, 0) + 1
        self.counters.mappings_created += 1
        self.counters.mappings_active += 1
        events.append(self._mapping_event(EventKind.MAPPING_CREATED, m, now))
        return m

    def _new_session(self, m: Mapping, y_addr: int, y_port: int, now: float) -> Session:
        flow = (m.proto, m.internal.addr, m.internal.port, y_addr, y_port)
        sess = Session(m, (y_addr, y_port), flow, m.created, now)
        m.sessions[(y_addr, y_port)] = sess
        m.addr_refs[y_addr] = m.addr_refs.get(y_addr, 0) + 1
        self.by_flow[flow] = sess
        self.counters.sessions_active += 1
        return sess

    def _arm(self, sess: Session) -> None:
        """Put the session's deadline on the heap; ``armed`` is its earliest entry there."""
        sess.armed = sess.expires
        heapq.heappush(self.heap, (sess.expires, next(self.seq), sess))

    def _touch(self, sess: Session, direction: int, flags: int, now: float, refresh: bool, events) -> None:
        """Note a packet on a session (direction 1 out, 2 in); refresh its timer if ``refresh``.

        A TCP state change to a shorter timer (a FIN or RST: RFC 5382 REQ-5's
        transitory timer) applies whatever the refresh direction; a new handshake on
        a closed session's 5-tuple starts a new connection.
        """
        sess.seen |= direction
        changed = False
        if flags:
            fin = bool(flags & 1)
            sess.fin_out = sess.fin_out or (direction == 1 and fin)
            sess.fin_in = sess.fin_in or (direction == 2 and fin)
            state = tcp_next_state(sess.state, flags, direction == 1, sess.fin_out, sess.fin_in)
            if restarts(sess.state, state):
                sess.fin_out = sess.fin_in = False
                refresh = True  # the new connection's SYN opens it, as an outbound one would
            changed = state is not sess.state
            sess.state = state
        if refresh:
            new = now + self._timeout(sess, now)
        elif changed:
            new = min(sess.expires, now + self._timeout(sess, now))
        else:
            return
        sess.expires = new
        if new < sess.armed and not sess.dead:
            self._arm(sess)  # the heap holds only a later deadline for it
        if refresh and self.refresh_events and events is not None:
            events.append(self._mapping_event(EventKind.MAPPING_REFRESHED, sess.mapping, now))

    def _timeout(self, sess: Session, now: float) -> float:
        """The session's idle timer now (RFC 4787 REQ-5, RFC 5382 REQ-5, RFC 5508 REQ-2)."""
        proto = sess.mapping.proto
        if proto == UDP:
            if sess.seen != 3:
                return self.t_udp_unreplied
            after = self.t_stream_after
            return self.t_udp if after is None or now - sess.started > after else self.t_udp_unreplied
        if proto == TCP:
            state = sess.state
            if state is TcpState.ESTABLISHED:
                return self.t_tcp_est
            return self.t_tcp_rst if state is TcpState.CLOSED else self.t_tcp_trans
        return self.t_icmp

    def _remove_session(self, sess: Session) -> None:
        if sess.dead:
            return
        sess.dead = True
        m = sess.mapping
        self.by_flow.pop(sess.flow, None)
        m.sessions.pop(sess.remote, None)
        decrement(m.addr_refs, sess.remote[0])
        self.counters.sessions_active -= 1

    def _remove_mapping(self, m: Mapping, now: float, events, kind, detail: str = "") -> None:
        for sess in list(m.sessions.values()):
            self._remove_session(sess)
        if self.by_external.get((m.proto, m.external.addr, m.external.port)) is m:
            del self.by_external[(m.proto, m.external.addr, m.external.port)]
        if self.by_key.get(m.key) is m:
            del self.by_key[m.key]
        decrement(self.per_host, m.internal.addr)
        if m.kind == "dynamic":
            self.allocator.release(m.external.addr, m.external.port, m.proto)
        self.counters.mappings_active -= 1
        if kind is EventKind.MAPPING_EXPIRED:
            self.counters.mappings_expired += 1
        if events is not None and kind is not None:
            events.append(self._mapping_event(kind, m, now, detail))

    # -- time ----------------------------------------------------------------------
    def expire(self, now: float) -> Tick:
        """End every session, mapping, held SYN and fragment due by ``now``."""
        events: list[Event] = []
        emits: list = []
        self._expire_due(now, events, emits)
        return Tick(tuple(events), tuple(emits))

    def _expire_due(self, now: float, events: list, emits: list) -> None:
        heap = self.heap
        while heap and heap[0][0] <= now:
            deadline, _, item = heapq.heappop(heap)
            if item.__class__ is Session:
                sess: Session = item  # type: ignore[assignment]
                if sess.dead or deadline != sess.armed:
                    continue  # ended, or a stale entry: an earlier one was pushed since
                if sess.expires > now:
                    self._arm(sess)
                    continue
                m = sess.mapping
                self._remove_session(sess)
                if not m.sessions and m.kind == "dynamic":
                    self._remove_mapping(m, now, events, EventKind.MAPPING_EXPIRED, "idle")
            else:
                item.due(self, now, events, emits)  # type: ignore[attr-defined]
        self.counters.emitted += len(emits)

    def schedule(self, deadline: float, item: object) -> None:
        """Ask for ``item.due(engine, now, events, emits)`` to run at ``deadline``."""
        heapq.heappush(self.heap, (deadline, next(self.seq), item))

    def next_deadline(self) -> Optional[float]:
        """When :meth:`expire` next has work (possibly a little early), or None."""
        return self.heap[0][0] if self.heap else None

    # -- reporting -------------------------------------------------------------------
    def mappings(self, now: Optional[float] = None) -> tuple[MappingView, ...]:
        """A snapshot of the mapping table, sorted by protocol and internal endpoint."""
        live = self.by_external.values()
        if now is not None:  # a read never expires anything: hide what is due instead
            live = [m for m in live if m.kind != "dynamic" or (m.expires or 0) > now]
        return snapshot(live)

    @property
    def external_addresses(self) -> tuple[str, ...]:
        """Every address the outside must route to this NAT: the pool and static externals."""
        return tuple(to_str(a) for a in self.pool) + tuple(to_str(a) for a in self.static_in)

    # -- helpers ---------------------------------------------------------------------
    def _drop(self, reason: DropReason, events) -> Drop:
        self.counters.drops[reason] += 1
        return Drop(reason, tuple(events) if events else ())

    def _limit(self, proto, x_addr, x_port, now, events, detail: str) -> Drop:
        """A limit-reached drop whose event says which limit."""
        ev = Event(EventKind.DROPPED, now, Proto(proto).label,
                   f"{to_str(x_addr)}:{x_port}", reason=DropReason.LIMIT_REACHED.value, detail=detail)
        return self._drop(DropReason.LIMIT_REACHED, (events or []) + [ev])

    @staticmethod
    def _mapping_event(kind: EventKind, m: Mapping, now: float, detail: str = "") -> Event:
        return Event(kind, now, m.describe().split()[0], str(m.internal), str(m.external), m.remote, None, detail)
