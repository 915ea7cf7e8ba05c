"""The NAT's state and its transitions: mappings, sessions, timers and side tables.

Theory of operation
-------------------
:class:`NatState` is the one owner of everything that changes while a NAT runs:
the mapping and session indexes, the timer heap, the counters, the port allocator,
and the side tables of held SYNs (:mod:`~natlab.engine.syn_hold`), fragment
translations (:mod:`~natlab.engine.fragments`) and unreplied inbound entries
(:mod:`~natlab.engine.inbound_first`). It knows nothing of packet bytes: the engine
(:mod:`natlab.engine.nat`) parses and rewrites, and asks the state to open, touch,
filter and end sessions. Helper modules get the state through small protocols
naming what they use (``HairpinContext``, ``ErrorContext``, ``FragmentContext``).

Three indexes make lookups one dict probe each:

- ``by_flow[FlowKey(proto, X, x, Y, y)] -> Session``: outbound packets;
- ``by_external[(proto, X', x')] -> Mapping``: inbound packets;
- ``_by_key[Dependency.key(flow)] -> Mapping``: new sessions find their mapping; the
  key is the flow trimmed by the mapping's endpoint dependency (RFC 4787 REQ-1).

The per-packet path probes ``by_flow`` and ``by_external`` with plain tuples (a
``FlowKey`` equals the tuple of its fields), so an established flow allocates no key.

Expiry is lazy: a heap (``timers``) of (deadline, seq, item) entries; refreshing a
session only moves its ``expires``; a popped entry that was refreshed is pushed again.
A refresh that *shortens* a session (a FIN, a RST, a timer lowered live) pushes an
earlier entry at once, so nothing outlives its deadline; ``armed`` tells the current
entry from stale ones. Other timers (held SYNs, fragments, claims) are objects with
``due(now, events, emits)``, which returns a later deadline to be called again, or None.
"""

from __future__ import annotations

import heapq
import itertools
import random
from typing import Iterator, Optional, Union

from natlab.engine import peer_mappings, static_nat
from natlab.engine.checksum_deltas import ICMP, TCP, UDP
from natlab.engine.counters import Counters
from natlab.engine.fragments import FragmentTable
from natlab.engine.inbound_first import Claims, Taken, leaves_claim
from natlab.engine.policy import Dependency, InboundFirst, Policy, Refresh
from natlab.engine.port_mappings import PortMappingTable
from natlab.engine.ports import PortAllocator
from natlab.engine.syn_hold import SynHold
from natlab.engine.table import Mapping, Session, TcpState, decrement, restarts, tcp_next_state
from natlab.engine.types import Addresses, Endpoint, FlowKey, Proto, to_int, to_str
from natlab.engine.verdicts import Drop, DropReason, Event, EventKind
from natlab.engine.views import MappingView, snapshot

_EIM, _ADM = Dependency.ENDPOINT_INDEPENDENT, Dependency.ADDRESS_DEPENDENT

_new_key = tuple.__new__
"""Makes a FlowKey from a tuple without FlowKey's own (slower) ``__new__``: new sessions are
the hot part of the slow path (``bench engine``'s new mappings/s)."""

OUT, IN = 1, 2
"""Directions of a packet on a session (``Session.seen`` is their union)."""


class NatState:
    """Mappings, sessions and timers of one NAT over ``pool``, with a seeded ``rng``."""

    def __init__(self, policy: Policy, pool: tuple[int, ...], rng: random.Random, refresh_events: bool) -> None:
        self.counters = Counters()
        self.by_flow: dict[tuple, Session] = {}
        """Sessions by ``FlowKey``; read by the engine's per-packet path, changed only here."""
        self.by_external: dict[tuple[int, int, int], Mapping] = {}
        """Mappings by (proto, X', x'): a plain tuple, the per-packet inbound probe."""
        self.timers: list[tuple[float, int, object]] = []
        """The heap of (deadline, seq, item); the engine peeks at its head per packet."""
        self.refresh_events = refresh_events
        self.syns = SynHold()
        self.frags = FragmentTable()
        self.claims = Claims()
        self.port_maps = PortMappingTable()
        """Explicit mappings (NAT-PMP, PCP, UPnP: :mod:`natlab.engine.port_mappings`)."""
        self.held_out = self.port_maps.outbound
        self._by_key: dict[tuple, Mapping] = {}
        self._forwards: dict[tuple[int, int, int], Mapping] = {}
        self._per_host: dict[int, int] = {}
        self._seq = itertools.count()
        self._rng = rng
        self._pool = pool
        self._allocator = PortAllocator(policy, pool, rng, self.counters)
        self.set_policy(policy)

    # -- configuration -----------------------------------------------------------
    def set_policy(self, policy: Policy) -> None:
        """Take ``policy``'s values (timers, limits, addresses, forwards); no mapping ends."""
        self._policy = policy
        self._allocator.policy = policy
        self._addresses = Addresses.of(self._pool, {to_int(s.internal): to_int(s.external) for s in policy.static})
        t = policy.timeouts
        self._t_udp, self._t_udp_unreplied = t.udp, t.udp_unreplied or t.udp
        self._t_tcp_est, self._t_tcp_trans, self._t_icmp = t.tcp_established, t.tcp_transitory, t.icmp
        self._t_tcp_rst = t.tcp_rst or t.tcp_transitory
        self._t_stream_after = t.udp_stream_after
        self._max_sessions = policy.limits.max_sessions or 0
        self._max_per_mapping = policy.limits.max_sessions_per_mapping or 0
        self.remap_inbound_first = policy.inbound_first is InboundFirst.REMAP
        if not self.remap_inbound_first:
            self.claims.clear()  # ``forget`` keeps no unreplied entries: none may clash later
        self.refresh_out = policy.refresh is not Refresh.INBOUND
        self.refresh_in = policy.refresh is not Refresh.OUTBOUND
        self.syns.answer = policy.tcp.unsolicited_syn
        self._install_forwards(0.0)

    def set_pool(self, pool: tuple[int, ...], now: float, events: list) -> None:
        """Change the external addresses; dynamic mappings on withdrawn ones end."""
        for m in [m for m in self.by_external.values() if m.kind == "dynamic" and m.external.addr not in pool]:
            self.remove_mapping(m, now, events, EventKind.MAPPING_EXPIRED, "external address withdrawn")
        self._pool = pool
        self._allocator.pool = pool
        self.set_policy(self._policy)

    def new_allocator(self) -> None:
        """Forget every port choice (pairings, blocks, sequence): a rebooted NAT's allocator."""
        self._allocator = PortAllocator(self._policy, self._pool, self._rng, self.counters)

    def _install_forwards(self, now: float) -> None:
        for m in list(self._forwards.values()):
            self.by_external.pop((m.proto, m.external.addr, m.external.port), None)
        self._forwards.clear()
        for m in static_nat.forward_mappings(self._policy, self._pool[0], now):
            self.by_external[(m.proto, m.external.addr, m.external.port)] = m
            self._forwards[(m.proto, m.internal.addr, m.internal.port)] = m

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def pool(self) -> tuple[int, ...]:
        return self._pool

    @property
    def addresses(self) -> Addresses:
        return self._addresses

    @property
    def allocator(self) -> PortAllocator:
        return self._allocator

    # -- filtering (REQ-8) -----------------------------------------------------------
    def admits(self, m: Mapping, y_addr: int, y_port: int = 0) -> bool:
        """Would filtering admit a packet from a remote with no session yet? EIF: yes; ADF: if
        a session shares its address (the same ``Dependency.key``); APDF: never. Forwards
        admit everyone, explicit port mappings whom their filters name."""
        f = self._policy.filtering
        if m.kind != "dynamic":
            return m.kind == "forward" or m.admits(y_addr, y_port)  # type: ignore[attr-defined]
        if f is _EIM:
            return True
        if f is _ADM:
            return m.addr_refs.get(y_addr, 0) > 0
        return False

    def filtered(self, m: Mapping, y_addr: int, y_port: int, now: float, events) -> list[Event]:
        """``events`` and the event telling that filtering refused Y:y on ``m``."""
        ev = Event(EventKind.FILTERED, now, m.describe().split()[0], str(m.internal), str(m.external),
                   f"{to_str(y_addr)}:{y_port}", DropReason.FILTERED.value, self._policy.filtering.value)
        return (events or []) + [ev]

    # -- sessions and mappings ---------------------------------------------------------
    def open_session(self, proto, x_addr, x_port, y_addr, y_port, flags, now, events: list,
                     port: int = 0) -> Union[Session, Drop]:
        """A new outbound session, on an existing mapping or a new one (REQ-1..4), or a Drop; a
        new mapping takes external ``port`` if given (a PCP PEER's suggestion, already checked free)."""
        if proto == TCP and flags & 0x04:
            return self.counters.drop(DropReason.NO_MAPPING, events)
        if self._max_sessions and self.counters.sessions_active >= self._max_sessions:
            return self.counters.drop(DropReason.SESSION_LIMIT, events)
        flow = _new_key(FlowKey, (proto, x_addr, x_port, y_addr, y_port))
        m = self._forwards.get((proto, x_addr, x_port))
        if m is None and self.held_out:
            m = self.held_out.get((proto, x_addr, x_port))  # an explicit port mapping: as a forward
        if m is None:
            key = self._policy.mapping.key(flow)
            m = self._by_key.get(key)
            if m is None:
                made = self._new_mapping(flow, key, now, events, port=port)
                if made.__class__ is Drop:
                    return made  # type: ignore[return-value]
                m = made  # type: ignore[assignment]
            if self.claims and proto != ICMP:
                taken = self.claims.clash(m, y_addr, y_port, now, self._in_use)
                if taken is not None:
                    m = self._remap(m, flow, taken, now, events)  # type: ignore[assignment]
                    if m.__class__ is Drop:
                        return m  # type: ignore[return-value]
        if self._max_per_mapping and len(m.sessions) >= self._max_per_mapping:
            return self.counters.drop(DropReason.SESSION_LIMIT, events)
        sess = self._new_session(m, flow, now)
        self.touch(sess, OUT, flags, now, True, events)
        self.arm(sess)
        return sess

    def inbound_session(self, m: Mapping, y_addr: int, y_port: int, flags: int, now: float,
                        events: list) -> Union[Session, Drop]:
        """A session opened from outside (admitted by filtering), or a Drop at a session
        limit. Unless inbound packets refresh (REQ-6), it may not outlive the mapping's
        current expiry."""
        if (self._max_sessions and self.counters.sessions_active >= self._max_sessions) or (
                self._max_per_mapping and len(m.sessions) >= self._max_per_mapping):
            return self.counters.drop(DropReason.SESSION_LIMIT, events)
        cap = None if (self.refresh_in or m.kind != "dynamic") else m.expires
        sess = self._new_session(m, _new_key(FlowKey, (m.proto, m.internal.addr, m.internal.port, y_addr, y_port)),
                                 now)
        self.touch(sess, IN, flags, now, cap is None, events)
        if cap is not None:
            sess.expires = cap
        self.arm(sess)
        return sess

    def _in_use(self, proto: int, addr: int, port: int) -> bool:
        return (proto, addr, port) in self.by_external

    def _new_mapping(self, flow: FlowKey, key: FlowKey, now: float, events, taken: Optional[Taken] = None,
                     port: int = 0):
        """A new dynamic mapping for the flow's X:x under ``key``, or a Drop; ``taken``
        overrides which external endpoints count as in use; ``port`` (a free one on the first
        address) is taken instead of asking the allocator."""
        proto, x_addr, x_port = flow.proto, flow.x_addr, flow.x_port
        limits = self._policy.limits
        if limits.max_mappings and self.counters.mappings_active >= limits.max_mappings:
            return self._limit(flow, now, events, f"limits.max_mappings ({limits.max_mappings} in total) reached")
        if limits.max_mappings_per_host and self._per_host.get(x_addr, 0) >= limits.max_mappings_per_host:
            return self._limit(flow, now, events, f"limits.max_mappings_per_host "
                               f"({limits.max_mappings_per_host} for {to_str(x_addr)}) reached")
        if port:
            got = self._allocator.reserve(proto, self._pool[0], port)
        else:
            got = self._allocator.allocate(proto, x_addr, x_port, taken or self._in_use)
        if got is None:
            return self.counters.drop(DropReason.PORT_EXHAUSTED, events)
        ext_addr, ext_port, evicts = got
        if events is None:
            events = []
        if evicts:
            old = self.by_external[(proto, ext_addr, ext_port)]
            if old.kind != "dynamic":
                self._allocator.release(ext_addr, ext_port, proto)
                return self.counters.drop(DropReason.PORT_EXHAUSTED, events)
            self.remove_mapping(old, now, events, EventKind.MAPPING_EVICTED, "port overloaded")
            self.counters.mappings_evicted += 1
        m = Mapping(proto, Endpoint(x_addr, x_port), Endpoint(ext_addr, ext_port), key, now)
        self._by_key[key] = m
        self.by_external[(proto, ext_addr, ext_port)] = m
        self._per_host[x_addr] = self._per_host.get(x_addr, 0) + 1
        self.counters.mappings_created += 1
        self.counters.mappings_active += 1
        events.append(_mapping_event(EventKind.MAPPING_CREATED, m, now))
        return m

    def _remap(self, m: Mapping, flow: FlowKey, taken: Taken, now: float, events: list):
        """Linux's clash with an unreplied entry (``inbound_first: remap``): a mapping of
        the flow's own for R:r, keyed address-and-port-dependently, avoiding ``taken``."""
        if not m.sessions and m.kind == "dynamic":
            # Made for this very packet: Linux never gave X':x to anyone, so neither do we.
            self.remove_mapping(m, m.created, None, None)
            self.counters.mappings_created -= 1
            if events and events[-1].kind is EventKind.MAPPING_CREATED and events[-1].internal == str(m.internal):
                events.pop()
        return self._new_mapping(flow, flow, now, events, taken)

    def _new_session(self, m: Mapping, flow: FlowKey, now: float) -> Session:
        """A session of ``m`` for ``flow`` (whose X:x is ``m``'s internal endpoint)."""
        y_addr = flow[3]
        remote = (y_addr, flow[4])
        sess = Session(m, remote, flow, m.created, now)
        m.sessions[remote] = sess
        m.addr_refs[y_addr] = m.addr_refs.get(y_addr, 0) + 1
        self.by_flow[flow] = sess
        self.counters.sessions_active += 1
        return sess

    def touch(self, sess: Session, direction: int, flags: int, now: float, refresh: bool, events) -> None:
        """Note a packet on a session (direction 1 out, 2 in); refresh its timer if ``refresh``.

        A TCP state change to a shorter timer (a FIN or RST: RFC 5382 REQ-5's
        transitory timer) applies whatever the refresh direction; a new handshake on
        a closed session's 5-tuple starts a new connection.
        """
        sess.seen |= direction
        changed = False
        if flags:
            fin = bool(flags & 1)
            sess.fin_out = sess.fin_out or (direction == OUT and fin)
            sess.fin_in = sess.fin_in or (direction == IN and fin)
            state = tcp_next_state(sess.state, flags, direction == OUT, sess.fin_out, sess.fin_in)
            if restarts(sess.state, state):
                sess.fin_out = sess.fin_in = False
                refresh = True  # the new connection's SYN opens it, as an outbound one would
            changed = state is not sess.state
            sess.state = state
        if refresh:
            new = now + self.timeout(sess, now)
        elif changed:
            new = min(sess.expires, now + self.timeout(sess, now))
        else:
            return
        sess.expires = new
        if new < sess.armed and not sess.dead:
            self.arm(sess)  # the heap holds only a later deadline for it
        if refresh and self.refresh_events and events is not None:
            events.append(_mapping_event(EventKind.MAPPING_REFRESHED, sess.mapping, now))

    def timeout(self, sess: Session, now: float) -> float:
        """The session's idle timer now (RFC 4787 REQ-5, RFC 5382 REQ-5, RFC 5508 REQ-2)."""
        proto = sess.mapping.proto
        if proto == UDP:
            if sess.seen != 3:
                return self._t_udp_unreplied
            after = self._t_stream_after
            return self._t_udp if after is None or now - sess.started > after else self._t_udp_unreplied
        if proto == TCP:
            state = sess.state
            if state is TcpState.ESTABLISHED:
                return self._t_tcp_est
            return self._t_tcp_rst if state is TcpState.CLOSED else self._t_tcp_trans
        return self._t_icmp

    def remove_session(self, sess: Session) -> None:
        if sess.dead:
            return
        sess.dead = True
        m = sess.mapping
        self.by_flow.pop(sess.flow, None)
        m.sessions.pop(sess.remote, None)
        decrement(m.addr_refs, sess.remote[0])
        self.counters.sessions_active -= 1

    def end_forward_session(self, proto: int, x_addr: int, x_port: int, y_addr: int, y_port: int) -> None:
        """The inside 5-tuple now goes by static 1:1 NAT: a port forward's session on it ends."""
        sess = self.by_flow.get((proto, x_addr, x_port, y_addr, y_port))
        if sess is not None and sess.mapping.kind == "forward":
            self.remove_session(sess)

    def remove_mapping(self, m: Mapping, now: float, events, kind, detail: str = "") -> None:
        """End ``m`` and its sessions; ``kind`` (if any) is the event to report it with."""
        for sess in list(m.sessions.values()):
            self.remove_session(sess)
        if self.by_external.get((m.proto, m.external.addr, m.external.port)) is m:
            del self.by_external[(m.proto, m.external.addr, m.external.port)]
        if self._by_key.get(m.key) is m:
            del self._by_key[m.key]
        decrement(self._per_host, m.internal.addr)
        if m.kind == "dynamic":
            self._allocator.release(m.external.addr, m.external.port, m.proto)
        self.counters.mappings_active -= 1
        if kind is EventKind.MAPPING_EXPIRED:
            self.counters.mappings_expired += 1
        if events is not None and kind is not None:
            events.append(_mapping_event(kind, m, now, detail))

    def dynamic_mappings(self) -> list[Mapping]:
        return [m for m in self.by_external.values() if m.kind == "dynamic"]

    def forward_sessions(self) -> Iterator[Session]:
        for m in list(self._forwards.values()):
            yield from list(m.sessions.values())

    def sessions(self) -> list[Session]:
        return list(self.by_flow.values())

    # -- side tables ---------------------------------------------------------------
    def hold_syn(self, data, ext_addr: int, ext_port: int, y_addr: int, y_port: int, now: float) -> None:
        """An unsolicited SYN: hold its answer for ``tcp.syn_hold`` seconds (RFC 5382 REQ-4)."""
        tcp = self._policy.tcp
        held = self.syns.hold(tcp, data, ext_addr, ext_port, y_addr, y_port)
        if held is not None:
            self.schedule(now + tcp.syn_hold, held)

    def claim(self, proto: int, flags: int, ext_addr: int, ext_port: int, y_addr: int, y_port: int,
              now: float) -> None:
        """An unsolicited UDP packet or TCP SYN leaves an unreplied entry (``inbound_first:
        remap``) for ``udp_unreplied`` or ``tcp_transitory`` seconds; entries count against
        ``limits.max_sessions``."""
        if not leaves_claim(proto, flags):
            return
        room = not self._max_sessions or len(self.claims) + self.counters.sessions_active < self._max_sessions
        expires = now + (self._t_udp_unreplied if proto == UDP else self._t_tcp_trans)
        made = self.claims.claim(proto, ext_addr, ext_port, y_addr, y_port, expires, room)
        if made is not None:
            self.schedule(expires, made)

    def clear_side_tables(self) -> None:
        """Forget held SYNs, fragments and unreplied entries (a reboot)."""
        self.syns.clear()
        self.frags.clear()
        self.claims.clear()

    # -- time ----------------------------------------------------------------------
    def arm(self, sess: Session) -> None:
        """Put the session's deadline on the heap; ``armed`` is its earliest entry there."""
        sess.armed = sess.expires
        heapq.heappush(self.timers, (sess.expires, next(self._seq), sess))

    def schedule(self, deadline: float, item: object) -> None:
        """Ask for ``item.due(now, events, emits)`` to run at ``deadline``."""
        heapq.heappush(self.timers, (deadline, next(self._seq), item))

    def expire_due(self, now: float, events: list, emits: list) -> None:
        """End every session, mapping and side-table entry due by ``now``."""
        heap = self.timers
        while heap and heap[0][0] <= now:
            deadline, _, item = heapq.heappop(heap)
            if item.__class__ is Session:
                sess: Session = item  # type: ignore[assignment]
                if sess.dead or deadline != sess.armed:
                    continue  # ended, or a stale entry: an earlier one was pushed since
                if sess.expires > now:
                    self.arm(sess)
                    continue
                if self.port_maps.peers and peer_mappings.holds(self, sess, now):
                    continue  # a PCP PEER holds it longer than its own timer (RFC 6887 section 12)
                m = sess.mapping
                self.remove_session(sess)
                if not m.sessions and m.kind == "dynamic":
                    self.remove_mapping(m, now, events, EventKind.MAPPING_EXPIRED, "idle")
            else:
                again = item.due(now, events, emits)  # type: ignore[attr-defined]
                if again is not None:
                    self.schedule(again, item)
        self.counters.emitted += len(emits)

    def next_deadline(self) -> Optional[float]:
        return self.timers[0][0] if self.timers else None

    # -- reporting -------------------------------------------------------------------
    def mappings(self, now: Optional[float] = None) -> tuple[MappingView, ...]:
        live = self.by_external.values()
        if now is not None:  # a read never expires anything: hide what is due instead
            live = [m for m in live if m.expires is None or m.expires > now]
        return snapshot(live)

    def sizes(self) -> dict[str, int]:
        return {"mappings": len(self.by_external), "sessions": len(self.by_flow), "timers": len(self.timers),
                "held_syns": len(self.syns), "fragments": len(self.frags.records) + self.frags.n_held,
                "claims": len(self.claims), "port_mappings": len(self.port_maps)}

    def _limit(self, flow: FlowKey, now: float, events, detail: str) -> Drop:
        """A limit-reached drop whose event says which limit."""
        ev = Event(EventKind.DROPPED, now, Proto(flow.proto).label, str(flow.internal),
                   reason=DropReason.LIMIT_REACHED.value, detail=detail)
        return self.counters.drop(DropReason.LIMIT_REACHED, (events or []) + [ev])


def _mapping_event(kind: EventKind, m: Mapping, now: float, detail: str = "") -> Event:
    return Event(kind, now, m.describe().split()[0], str(m.internal), str(m.external), m.remote, None, detail)
