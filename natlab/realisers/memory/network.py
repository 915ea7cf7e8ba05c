"""An in-memory network: the netns lab's fast twin (no root, no sockets, a manual clock).

Theory of operation
-------------------
The network is a tree of *realms*. The internet is the root realm (``None``);
each NAT owns one realm, its inside, and sits with its outside in a parent realm
(the internet, or another NAT's inside for chained NATs). Every host lives in
exactly one realm. :meth:`MemNet.from_topology` builds this tree from a
topology file: a network that is a gateway's inside is that gateway's realm,
every other network (joined by routers or not) is the internet.

A packet in a realm is routed by its destination address, first match wins:

1. a host of this realm with that address: the host's stack takes it
   (:mod:`natlab.realisers.memory.stack`) and whatever it answers is routed in turn;
2. a NAT whose outside is in this realm and whose pool (or a static 1:1
   external) holds the address: ``engine.process(OUTSIDE)``; a ``Forward``
   continues inside that NAT;
3. if the realm is a NAT's inside and the address is outside its
   ``inside_prefix``: ``engine.process(INSIDE)``; a ``Forward`` continues in the
   parent realm, a ``Hairpin`` turns back into this realm;
4. otherwise the packet is dropped for want of a route.

Packets an engine emits itself (``Emit``) are routed the same way, from the
realm on the side they leave by. Time is manual: ``advance`` moves everyone's
clock, ``advance_gateway`` only one NAT's (like the control socket's
``advance``); each NAT runs on ``now + its offset``. Every NAT keeps the events
its engine reports, numbered like a real gateway's (``natlab events``).

Randomness is seeded: from a topology, each NAT's engine gets its gateway's
seed (as the netns gateway does); built by hand, one ``random.Random(seed)``
hands each NAT its own.
"""

from __future__ import annotations

import collections
import ipaddress
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence, Union

from natlab.engine import Drop, Engine, Forward, Hairpin, MappingView, Policy, Side
from natlab.engine.types import AddressLike, to_int, to_str
from natlab.engine.verdicts import Tick, drop_records
from natlab.realisers.memory.stack import HostStack, TcpConn
from natlab.packet import build
from natlab.packet.headers import PROTO_UDP, parse_packet, summarize

__all__ = ["Datagram", "Delivered", "Dropped", "MemNet", "Outcome"]

INTERNET: Optional[str] = None
_MAX_HOPS = 16
EVENT_RING = 10_000


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
    addresses: tuple[int, ...]
    realm: Optional[str]
    stack: HostStack

    @property
    def address(self) -> int:
        return self.addresses[0]

    @property
    def inbox(self) -> list[bytes]:
        return self.stack.inbox


@dataclass
class _Nat:
    name: str
    engine: Engine
    inside: ipaddress.IPv4Network
    realm: Optional[str]  # where its outside is
    offset: float = 0.0
    """How far this NAT's clock is ahead of the network's (``advance_gateway``)."""
    events: collections.deque = field(default_factory=lambda: collections.deque(maxlen=EVENT_RING))
    seq: int = 0
    stats: dict[str, int] = field(default_factory=lambda: {
        "packets_inside": 0, "packets_outside": 0, "emitted": 0, "hairpins_sent": 0})

    @property
    def pool(self) -> frozenset[int]:
        return self.engine.pool_set

    def routes_to(self, address: int) -> bool:
        """Whether the outside must send ``address`` to this NAT: pool or static external."""
        return address in self.engine.pool_set or address in self.engine.static_in

    def mappings(self) -> tuple[MappingView, ...]:
        return self.engine.mappings()

    def record(self, entry: dict[str, Any], now: float) -> None:
        """Keep one event, numbered and stamped like the gateway service does."""
        self.seq += 1
        entry["seq"] = self.seq
        entry.setdefault("at", round(now, 6))
        entry["gateway"] = self.name
        self.events.append(entry)


def _realm_name(realm: Optional[str]) -> str:
    return "internet" if realm is None else realm


class MemNet:
    """Hosts, NATs and a manual clock; ``seed`` fixes every NAT's choices.

    ``stacks`` gives hosts a minimal kernel (answers to closed ports, pings,
    TCP handshakes); without it a host is a sink that keeps every packet.
    """

    def __init__(self, seed: int = 0, *, stacks: bool = False, name: str = "memnet") -> None:
        self.seed = seed
        self.name = name
        self.stacks = stacks
        self.rng = random.Random(seed)
        self.now = 0.0
        self.hosts: dict[str, _Host] = {}
        self.nats: dict[str, _Nat] = {}

    @classmethod
    def from_topology(cls, topo: Any, seed: Optional[int] = None) -> "MemNet":
        """The in-memory twin of a :class:`~natlab.topology.model.Topology`.

        ``seed`` (default: the topology's) fixes every gateway's ports; with the
        topology's own seed each engine gets exactly the seed its netns gateway gets.
        """
        from natlab.behaviours.presets import resolve
        from natlab.topology.addressing import derive_seed

        lab_seed = topo.seed if seed is None else seed
        net = cls(lab_seed, stacks=True, name=topo.name)
        realm_of = {gw.inside: gw.name for gw in topo.gateways}
        pending = list(topo.gateways)
        while pending:  # outer NATs first: a chained NAT needs its parent's realm
            ready = [gw for gw in pending if realm_of.get(gw.outside) in (None, *net.nats)]
            if not ready:
                raise ValueError(f"gateways chained in a loop: {[gw.name for gw in pending]}")
            for gw in ready:
                policy = resolve(gw.behaviour, overrides=gw.overrides or None).policy
                engine_seed = gw.seed if lab_seed == topo.seed else derive_seed(lab_seed, gw.name)
                net.add_nat(gw.name, policy, [str(a) for a in gw.pool], str(topo.network(gw.inside).subnet),
                            behind=realm_of.get(gw.outside), seed=engine_seed)
                pending.remove(gw)
        for host in topo.hosts:
            net.add_host(host.name, [str(a) for a in host.addresses], behind=realm_of.get(host.legs[0].network))
        return net

    # -- building ------------------------------------------------------------------
    def add_nat(self, name: str, policy: Policy, pool: Sequence[AddressLike], inside_prefix: str,
                *, behind: Optional[str] = None, seed: Optional[int] = None) -> _Nat:
        """A NAT with ``pool`` on its outside (the internet, or ``behind``'s inside).

        ``seed`` seeds its engine; by default it is drawn from the network's RNG.
        """
        self._check_new(name)
        self._check_realm(behind)
        rng = random.Random(self.rng.getrandbits(64) if seed is None else seed)
        nat = _Nat(name, Engine(policy, pool, rng), ipaddress.IPv4Network(inside_prefix), behind)
        self.nats[name] = nat
        return nat

    def add_host(self, name: str, address: Union[AddressLike, Sequence[AddressLike]], *,
                 behind: Optional[str] = None) -> None:
        """A host on the internet, or inside the NAT named ``behind``; one address or several."""
        self._check_new(name)
        self._check_realm(behind)
        many = address if isinstance(address, (list, tuple)) else [address]
        addrs = tuple(to_int(a) for a in many)
        if not addrs:
            raise ValueError(f"host {name}: needs at least one address")
        for addr in addrs:
            if behind is not None and ipaddress.IPv4Address(addr) not in self.nats[behind].inside:
                raise ValueError(f"host {name}: {to_str(addr)} is outside {behind}'s {self.nats[behind].inside}")
        self.hosts[name] = _Host(name, addrs, behind, HostStack(name, addrs, answers=self.stacks))

    def _check_new(self, name: str) -> None:
        if name in self.hosts or name in self.nats:
            raise ValueError(f"name {name!r} is already taken")

    def _check_realm(self, behind: Optional[str]) -> None:
        if behind is not None and behind not in self.nats:
            raise ValueError(f"no NAT named {behind!r}; have {sorted(self.nats)}")

    # -- using -----------------------------------------------------------------------
    def nat(self, name: str) -> _Nat:
        return self.nats[name]

    def stack(self, host: str) -> HostStack:
        """The host's stack: bind/listen/close ports, its TCP connections, its inbox."""
        return self.hosts[host].stack

    def address(self, host: str) -> str:
        return to_str(self.hosts[host].address)

    def addresses(self, host: str) -> list[str]:
        return [to_str(a) for a in self.hosts[host].addresses]

    def send(self, host: str, packet: bytes) -> Outcome:
        """Send a raw IPv4 packet from ``host`` (whatever its source says) and walk it to its end."""
        return self._route(bytes(packet), self.hosts[host].realm, ())

    def send_udp(self, host: str, sport: int, dst: AddressLike, dport: int, payload: bytes = b"",
                 *, src: Optional[AddressLike] = None) -> Outcome:
        """Send a datagram from ``host``:``sport`` (from ``src``, default its first address)."""
        h = self.hosts[host]
        return self.send(host, build.udp(h.address if src is None else src, sport, dst, dport, payload))

    def connect_tcp(self, host: str, sport: int, dst: AddressLike, dport: int) -> tuple[TcpConn, Outcome]:
        """Open a TCP connection; the handshake runs at once. The connection and where the SYN went."""
        h = self.hosts[host]
        conn, syn = h.stack.connect(h.address, sport, to_int(dst), dport)
        return conn, self.send(host, syn)

    def ping(self, host: str, dst: AddressLike, ident: int, seq: int = 1, payload: bytes = b"") -> Outcome:
        """Send an ICMP echo request; the destination host's stack answers it."""
        return self.send(host, build.icmp_echo(self.hosts[host].address, dst, ident, seq, payload=payload))

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

    # -- time and gateway operations -------------------------------------------------
    def now_of(self, nat: str) -> float:
        """A NAT's clock: the network's, plus what ``advance_gateway`` added."""
        return self.now + self.nats[nat].offset

    def advance(self, seconds: float) -> None:
        """Move everyone's clock on and let every NAT expire what is due."""
        self.now += seconds
        for nat in self.nats.values():
            self._tick(nat, nat.engine.expire(self.now + nat.offset))

    def advance_gateway(self, name: str, seconds: float) -> Tick:
        """Move one NAT's clock on (time travel) and let it expire what is due; what it did."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        nat = self.nats[name]
        nat.offset += seconds
        return self._tick(nat, nat.engine.expire(self.now_of(name)))

    def reconfigure(self, name: str, policy: Policy, detail: str = "") -> Tick:
        """Apply a new policy to one NAT live (mappings stay unless the mapping behaviour changed)."""
        tick = self._tick(self.nats[name], self.nats[name].engine.reconfigure(policy, self.now_of(name)))
        self.nats[name].record({"kind": "reconfigured", "detail": detail}, self.now_of(name))
        return tick

    def flush(self, name: str) -> Tick:
        """Reboot one NAT: every dynamic mapping is forgotten."""
        return self._tick(self.nats[name], self.nats[name].engine.flush(self.now_of(name)))

    def set_pool(self, name: str, pool: Sequence[AddressLike]) -> Tick:
        """Change one NAT's external addresses; routing follows the engine's pool at once."""
        nat = self.nats[name]
        tick = self._tick(nat, nat.engine.set_pool(pool, self.now_of(name)))
        nat.record({"kind": "pool-changed", "detail": " ".join(to_str(to_int(a)) for a in pool)},
                   self.now_of(name))
        return tick

    # -- routing -----------------------------------------------------------------------
    def _route(self, data: bytes, realm: Optional[str], path: tuple[str, ...]) -> Outcome:
        if len(path) > _MAX_HOPS:
            return Dropped(_realm_name(realm), "loop", path)
        dst = int.from_bytes(data[16:20], "big")
        for h in self.hosts.values():
            if h.realm == realm and dst in h.addresses:
                for answer in h.stack.receive(data):
                    self._route(answer, h.realm, ())
                return Delivered(h.name, path)
        for nat in self.nats.values():
            if nat.realm == realm and nat.routes_to(dst):
                return self._through(nat, data, Side.OUTSIDE, path)
        if realm is not None and ipaddress.IPv4Address(dst) not in self.nats[realm].inside:
            return self._through(self.nats[realm], data, Side.INSIDE, path)
        return Dropped(_realm_name(realm), "no-route", path)

    def _through(self, nat: _Nat, data: bytes, side: Side, path: tuple[str, ...]) -> Outcome:
        now = self.now + nat.offset
        nat.stats["packets_inside" if side is Side.INSIDE else "packets_outside"] += 1
        verdict = nat.engine.process(data, side, now)
        path = path + (nat.name,)
        if isinstance(verdict, Drop):
            self._record_drop(nat, verdict, data, side, now)
            self._emit(nat, verdict.emits)
            return Dropped(nat.name, verdict.reason.value, path)
        self._record_events(nat, verdict.events, now)
        self._emit(nat, verdict.emits)
        if isinstance(verdict, Hairpin):
            nat.stats["hairpins_sent"] += 1
            return self._route(bytes(verdict.data), nat.name, path)
        assert isinstance(verdict, Forward)
        onward = nat.name if side is Side.OUTSIDE else nat.realm
        return self._route(bytes(verdict.data), onward, path)

    def _emit(self, nat: _Nat, emits: Iterable[Any]) -> None:
        for e in emits:
            nat.stats["emitted"] += 1
            self._route(bytes(e.data), nat.name if e.side is Side.INSIDE else nat.realm, (nat.name,))

    def _tick(self, nat: _Nat, tick: Tick) -> Tick:
        self._record_events(nat, tick.events, self.now + nat.offset)
        self._emit(nat, tick.emits)
        return tick

    # -- events ------------------------------------------------------------------------
    @staticmethod
    def _record_events(nat: _Nat, events: Iterable[Any], now: float) -> None:
        for event in events:
            nat.record(event.to_dict(), now)

    @staticmethod
    def _record_drop(nat: _Nat, verdict: Drop, data: bytes, side: Side, now: float) -> None:
        """As the gateway service records a drop (:func:`natlab.engine.verdicts.drop_records`)."""
        for entry in drop_records(verdict, side, summarize(data)):
            nat.record(entry, now)
