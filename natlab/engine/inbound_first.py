"""Inbound-first remapping: Linux conntrack's clash with an unreplied entry (``inbound_first: remap``).

Theory of operation
-------------------
Linux tracks every packet, wanted or not. A UDP packet from a remote R:r to the
NAT's X':x that no connection expects (no mapping, or one whose filter refuses
R) still makes a conntrack entry, R:r -> X':x, *unreplied*, for
``timeouts.udp_unreplied`` seconds (refreshed by R's further packets). When the
inside host X:x later sends to R:r, MASQUERADE wants the reply tuple
R:r -> X':x for it, finds that entry holding it, and picks another port: the
flow to R leaves from X':x2 while every other remote still sees X':x. R sees an
endpoint-dependent mapping (RFC 4787 REQ-1 broken for R only); two default Linux
NATs hole-punching towards each other both end up so, and RFC 3489 clients call
Linux "symmetric".

Here an unreplied entry is a *claim* on (proto, X', x', R, r). A new outbound
session whose mapping's external endpoint is claimed by its remote gets a mapping
of its own for that remote (keyed like an address-and-port-dependent one) on a
port no claim of that remote holds. Claims count against ``limits.max_sessions``
and expire from the engine's heap. Only UDP is modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from natlab.engine.checksum_deltas import UDP
from natlab.engine.types import to_str

if TYPE_CHECKING:
    from natlab.engine.nat import Engine
    from natlab.engine.table import Mapping


class Claim:
    """One unreplied inbound entry, R:r -> X':x'."""

    __slots__ = ("key", "expires")

    def __init__(self, key: tuple, expires: float) -> None:
        self.key = key
        self.expires = expires

    def due(self, engine: "Engine", now: float, events: list, emits: list) -> None:
        if engine.claims.get(self.key) is not self:
            return
        if self.expires > now:
            engine.schedule(self.expires, self)
            return
        engine.claims.drop(self.key)


class Claims:
    """Claims by (proto, X', x', R, r), and the external endpoints each remote claims."""

    def __init__(self) -> None:
        self.by_key: dict[tuple, Claim] = {}
        self.by_remote: dict[tuple, set] = {}

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def __len__(self) -> int:
        return len(self.by_key)

    def get(self, key: tuple):
        return self.by_key.get(key)

    def add(self, claim: Claim) -> None:
        proto, ext_addr, ext_port, y_addr, y_port = claim.key
        self.by_key[claim.key] = claim
        self.by_remote.setdefault((proto, y_addr, y_port), set()).add((ext_addr, ext_port))

    def drop(self, key: tuple) -> None:
        if self.by_key.pop(key, None) is None:
            return
        proto, ext_addr, ext_port, y_addr, y_port = key
        held = self.by_remote.get((proto, y_addr, y_port))
        if held is not None:
            held.discard((ext_addr, ext_port))
            if not held:
                del self.by_remote[(proto, y_addr, y_port)]

    def live(self, key: tuple, now: float) -> bool:
        claim = self.by_key.get(key)
        return claim is not None and claim.expires > now

    def clear(self) -> None:
        self.by_key.clear()
        self.by_remote.clear()


def claim(engine: "Engine", ext_addr: int, ext_port: int, y_addr: int, y_port: int, now: float) -> None:
    """An unsolicited UDP packet R:r -> X':x' leaves (or refreshes) an unreplied entry."""
    key = (UDP, ext_addr, ext_port, y_addr, y_port)
    expires = now + engine.t_udp_unreplied
    found = engine.claims.get(key)
    if found is not None:
        found.expires = expires
        return
    if engine.max_sessions and len(engine.claims) + engine.counters.sessions_active >= engine.max_sessions:
        return  # conntrack's table is full: the packet leaves nothing
    made = Claim(key, expires)
    engine.claims.add(made)
    engine.schedule(expires, made)


def avoid_clash(engine: "Engine", m: "Mapping", y_addr: int, y_port: int, now: float, events):
    """The mapping a new session of ``m``'s internal endpoint to R:r uses: ``m`` itself
    unless R claims ``m``'s external endpoint; then one of its own, for R only (or a Drop)."""
    key = (UDP, m.external.addr, m.external.port, y_addr, y_port)
    if not engine.claims.live(key, now):
        return m
    claimed = engine.claims.by_remote.get((UDP, y_addr, y_port), set())
    in_use = engine.by_external.__contains__

    def taken(proto: int, addr: int, port: int) -> bool:
        return in_use((proto, addr, port)) or (addr, port) in claimed

    x_addr, x_port = m.internal
    if not m.sessions and m.kind == "dynamic":
        # Made for this very packet: Linux never gave X':x to anyone, so neither do we.
        _undo_new_mapping(engine, m, events)
    return engine._new_mapping(UDP, x_addr, x_port, y_addr, y_port, (UDP, x_addr, x_port, y_addr, y_port),
                               now, events, taken=taken, remote=f"{to_str(y_addr)}:{y_port}")


def _undo_new_mapping(engine: "Engine", m: "Mapping", events) -> None:
    engine._remove_mapping(m, m.created, None, None)
    engine.counters.mappings_created -= 1
    if events and events[-1].kind.value == "mapping-created" and events[-1].internal == str(m.internal):
        events.pop()
