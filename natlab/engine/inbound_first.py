"""Inbound-first remapping: Linux conntrack's clash with an unreplied entry (``inbound_first: remap``).

Theory of operation
-------------------
Linux tracks every packet, wanted or not. A packet from a remote R:r to the
NAT's X':x that no connection expects (no mapping, or one whose filter refuses
R) still makes a conntrack entry, R:r -> X':x, *unreplied*: a UDP datagram for
``timeouts.udp_unreplied`` seconds, a TCP SYN (SYN_SENT, as the router's INPUT
policy drops it) for ``timeouts.tcp_transitory`` seconds (Linux:
nf_conntrack_tcp_timeout_syn_sent, 120 s); R's further packets refresh it. When
the inside host X:x later opens a flow to R:r (a datagram, a SYN), MASQUERADE
wants the reply tuple R:r -> X':x for it, finds that entry holding it, and picks
another port: the flow to R leaves from X':x2 while every other remote still
sees X':x. R sees an endpoint-dependent mapping (RFC 4787 REQ-1 broken for R
only; RFC 5382 REQ-1 for TCP); two default Linux NATs hole-punching (UDP, or TCP
simultaneous open) towards each other both end up so, and RFC 3489 clients call
Linux "symmetric".

Here an unreplied entry is a *claim* on (proto, X', x', R, r). A new outbound
session whose mapping's external endpoint is claimed by its remote gets a mapping
of its own for that remote (keyed like an address-and-port-dependent one) on a
port no claim of that remote holds. Only UDP datagrams and TCP SYNs (no ACK, no
RST) leave claims: a stray ACK or RST makes no conntrack entry worth clashing
with, and ICMP queries carry the sender's identifier, not a port of ours.
Claims count against ``limits.max_sessions`` and expire from the engine's heap;
only slow paths (a drop, a new session) ever look at them. This module holds the
claims table; :class:`natlab.engine.state.NatState` makes the remapped mapping.
"""

from __future__ import annotations

from typing import Callable, Optional

from natlab.engine.checksum_deltas import TCP, UDP
from natlab.engine.table import ACK, RST, SYN, Mapping

ClaimKey = tuple[int, int, int, int, int]
"""(proto, X', x', R, r): the unreplied entry R:r -> X':x'."""

Taken = Callable[[int, int, int], bool]


def leaves_claim(proto: int, flags: int) -> bool:
    """Whether an unsolicited inbound packet makes a conntrack entry a later flow clashes
    with: any UDP datagram, a TCP SYN without ACK or RST."""
    if proto == UDP:
        return True
    return proto == TCP and flags & (SYN | ACK | RST) == SYN


class Claim:
    """One unreplied inbound entry, R:r -> X':x'; a timer of the engine's heap."""

    __slots__ = ("table", "key", "expires")

    def __init__(self, table: "Claims", key: ClaimKey, expires: float) -> None:
        self.table = table
        self.key = key
        self.expires = expires

    def due(self, now: float, events: list, emits: list) -> Optional[float]:
        """End the claim, or (refreshed since) ask to be called again at its new expiry."""
        if self.table.get(self.key) is not self:
            return None
        if self.expires > now:
            return self.expires
        self.table.drop(self.key)
        return None


class Claims:
    """Claims by (proto, X', x', R, r), and the external endpoints each (proto, R, r) claims."""

    def __init__(self) -> None:
        self.by_key: dict[ClaimKey, Claim] = {}
        self.by_remote: dict[tuple[int, int, int], set[tuple[int, int]]] = {}

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def __len__(self) -> int:
        return len(self.by_key)

    def get(self, key: ClaimKey) -> Optional[Claim]:
        return self.by_key.get(key)

    def claim(self, proto: int, ext_addr: int, ext_port: int, y_addr: int, y_port: int, expires: float,
              room: bool) -> Optional[Claim]:
        """An unsolicited packet R:r -> X':x' (UDP, or a TCP SYN) leaves (or refreshes) an
        unreplied entry. The new claim, for the caller to schedule at ``expires``; None if an
        existing one was refreshed or there is no ``room`` (conntrack's table is full: the
        packet leaves nothing)."""
        key = (proto, ext_addr, ext_port, y_addr, y_port)
        found = self.by_key.get(key)
        if found is not None:
            found.expires = expires
            return None
        if not room:
            return None
        made = Claim(self, key, expires)
        self.by_key[key] = made
        self.by_remote.setdefault((proto, y_addr, y_port), set()).add((ext_addr, ext_port))
        return made

    def drop(self, key: ClaimKey) -> None:
        if self.by_key.pop(key, None) is None:
            return
        proto, ext_addr, ext_port, y_addr, y_port = key
        held = self.by_remote.get((proto, y_addr, y_port))
        if held is not None:
            held.discard((ext_addr, ext_port))
            if not held:
                del self.by_remote[(proto, y_addr, y_port)]

    def live(self, key: ClaimKey, now: float) -> bool:
        claim = self.by_key.get(key)
        return claim is not None and claim.expires > now

    def clash(self, m: Mapping, y_addr: int, y_port: int, now: float, in_use: Taken) -> Optional[Taken]:
        """None if R:r may use ``m``; if R claims ``m``'s external endpoint, which external
        endpoints a mapping of its own for R must avoid: those ``in_use`` and R's claims."""
        proto = m.proto
        if not self.live((proto, m.external.addr, m.external.port, y_addr, y_port), now):
            return None
        claimed = self.by_remote.get((proto, y_addr, y_port), set())

        def taken(p: int, addr: int, port: int) -> bool:
            return in_use(p, addr, port) or (addr, port) in claimed

        return taken

    def clear(self) -> None:
        self.by_key.clear()
        self.by_remote.clear()
