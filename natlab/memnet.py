"""An in-memory network: the netns lab's fast twin (no root, no sockets, a manual clock).

Theory of operation
-------------------
The network is a tree of *realms*. The internet is the root realm (``None``);
each NAT owns one realm, its inside, and sits with its outside in a parent realm
(the internet, or another NAT's inside for chained NATs). Every host lives in
exactly one realm.

A packet in a realm is routed by its destination address, first match wins:

1. a host of this realm with that address: queue it in the host's inbox;
2. a NAT whose outside is in this realm and whose pool holds the address:
   ``engine.process(OUTSIDE)``; a ``Forward`` continues inside that NAT;
3. if the realm is a NAT's inside and the address is outside its
   ``inside_prefix``: ``engine.process(INSIDE)``; a ``Forward`` continues in the
   parent realm, a ``Hairpin`` turns back into this realm;
4. otherwise the packet is dropped for want of a route.

Packets an engine emits itself (``Emit``) are routed the same way, from the
realm on the side they leave by. The clock is manual: ``advance`` moves it and
runs every engine's ``expire``. Randomness comes from one seeded
``random.Random``, so a seed fixes every port every NAT picks.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from natlab.engine import Drop, Engine, Forward, Hairpin, MappingView, Policy, Side
from natlab.engine.types import AddressLike, to_int, to_str
from natlab.packet import build
from natlab.packet.headers import PROTO_UDP, parse_packet

__all__ = ["Datagram", "Delivered", "Dropped", "MemNet", "Outcome"]

INTERNET: Optional[str] = None
_MAX_HOPS = 16


@dataclass(frozen=True)
class Datagram:
    """A UDP datagram as a host's socket sees it."""

    src: str
    sport: int
    payload: bytes


@dataclass(frozen=True)
class Delivered:
    """The packet reached ``host``; ``path`` names the NATs it crossed, in order."""

    host: str
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dropped:
    """The packet was dropped at ``where`` (a NAT's name, or a realm with no route) for ``reason``."""

    where: str
    reason: str
    path: tuple[str, ...] = ()


Outcome = Union[Delivered, Dropped]


@dataclass
class _Host:
    name: str
    address: int
    realm: Optional[str]
    inbox: list[bytes] = field(default_factory=list)


@dataclass
class _Nat:
    name: str
    engine: Engine
    pool: frozenset[int]
    inside: ipaddress.IPv4Network
    realm: Optional[str]  # where its outside is

    def mappings(self) -> tuple[MappingView, ...]:
        return self.engine.mappings()


def _realm_name(realm: Optional[str]) -> str:
    return "internet" if realm is None else realm


class MemNet:
    """Hosts, NATs and a manual clock; ``seed`` fixes every NAT's choices."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.hosts: dict[str, _Host] = {}
        self.nats: dict[str, _Nat] = {}

    # -- building ------------------------------------------------------------------
    def add_nat(self, name: str, policy: Policy, pool: Sequence[AddressLike], inside_prefix: str,
                *, behind: Optional[str] = None) -> _Nat:
        """A NAT with ``pool`` on its outside (the internet, or ``behind``'s inside)."""
        self._check_new(name)
        self._check_realm(behind)
        engine = Engine(policy, pool, random.Random(self.rng.getrandbits(64)))
        nat = _Nat(name, engine, frozenset(to_int(a) for a in pool), ipaddress.IPv4Network(inside_prefix), behind)
        self.nats[name] = nat
        return nat

    def add_host(self, name: str, address: AddressLike, *, behind: Optional[str] = None) -> None:
        """A host on the internet, or inside the NAT named ``behind``."""
        self._check_new(name)
        self._check_realm(behind)
        addr = to_int(address)
        if behind is not None and ipaddress.IPv4Address(addr) not in self.nats[behind].inside:
            raise ValueError(f"host {name}: {to_str(addr)} is outside {behind}'s {self.nats[behind].inside}")
        self.hosts[name] = _Host(name, addr, behind)

    def _check_new(self, name: str) -> None:
        if name in self.hosts or name in self.nats:
            raise ValueError(f"name {name!r} is already taken")

    def _check_realm(self, behind: Optional[str]) -> None:
        if behind is not None and behind not in self.nats:
            raise ValueError(f"no NAT named {behind!r}; have {sorted(self.nats)}")

    # -- using -----------------------------------------------------------------------
    def nat(self, name: str) -> _Nat:
        return self.nats[name]

    def address(self, host: str) -> str:
        return to_str(self.hosts[host].address)

    def send_udp(self, host: str, sport: int, dst: AddressLike, dport: int, payload: bytes = b"") -> Outcome:
        """Send a datagram from ``host``:``sport`` and walk it to its end; say where it ended."""
        h = self.hosts[host]
        return self._route(build.udp(h.address, sport, dst, dport, payload), h.realm, ())

    def recv(self, host: str, port: int) -> list[Datagram]:
        """Take every UDP datagram queued for ``host``:``port``, oldest first."""
        h = self.hosts[host]
        taken, kept = [], []
        for raw in h.inbox:
            pkt = parse_packet(raw)
            if pkt.ip.proto == PROTO_UDP and pkt.l4 is not None and pkt.l4.dport == port:
                taken.append(Datagram(to_str(pkt.ip.src), pkt.l4.sport, pkt.payload))
            else:
                kept.append(raw)
        h.inbox[:] = kept
        return taken

    def advance(self, seconds: float) -> None:
        """Move the clock on and let every NAT expire what is due."""
        self.now += seconds
        for nat in self.nats.values():
            self._emit(nat, nat.engine.expire(self.now).emits)

    # -- routing -----------------------------------------------------------------------
    def _route(self, data: bytes, realm: Optional[str], path: tuple[str, ...]) -> Outcome:
        if len(path) > _MAX_HOPS:
            return Dropped(_realm_name(realm), "loop", path)
        dst = int.from_bytes(data[16:20], "big")
        for h in self.hosts.values():
            if h.realm == realm and h.address == dst:
                h.inbox.append(bytes(data))
                return Delivered(h.name, path)
        for nat in self.nats.values():
            if nat.realm == realm and dst in nat.pool:
                return self._through(nat, data, Side.OUTSIDE, path)
        if realm is not None and ipaddress.IPv4Address(dst) not in self.nats[realm].inside:
            return self._through(self.nats[realm], data, Side.INSIDE, path)
        return Dropped(_realm_name(realm), "no-route", path)

    def _through(self, nat: _Nat, data: bytes, side: Side, path: tuple[str, ...]) -> Outcome:
        verdict = nat.engine.process(data, side, self.now)
        self._emit(nat, verdict.emits)
        path = path + (nat.name,)
        if isinstance(verdict, Drop):
            return Dropped(nat.name, verdict.reason.value, path)
        if isinstance(verdict, Hairpin):
            return self._route(bytes(verdict.data), nat.name, path)
        assert isinstance(verdict, Forward)
        onward = nat.name if side is Side.OUTSIDE else nat.realm
        return self._route(bytes(verdict.data), onward, path)

    def _emit(self, nat: _Nat, emits) -> None:
        for e in emits:
            self._route(bytes(e.data), nat.name if e.side is Side.INSIDE else nat.realm, (nat.name,))
