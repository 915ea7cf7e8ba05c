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
   external) holds the address: its gateway's ``process(OUTSIDE)``; a ``Forward``
   continues inside that NAT;
3. if the realm is a NAT's inside and the address is outside its
   ``inside_prefix``: ``process(INSIDE)``; a ``Forward`` continues in the
   parent realm, a ``Hairpin`` turns back into this realm;
4. otherwise the packet is dropped for want of a route.

Every NAT is a real :class:`~natlab.gateway.service.Gateway` on the memory
datapath (:mod:`natlab.datapaths.memory`): the very service a netns gateway
process runs, so counters, events, mapping rows and the control operations
(``set``, ``configure``, ``advance``, ``flush``, ``set-pool``) are the same on
every tier by construction; :meth:`MemNet.request` is its control socket.
Packets a gateway originates (emits, hairpins) leave through its sender and are
routed from the gateway by destination. Time is manual: ``advance`` moves
everyone's clock, ``advance_gateway`` only one NAT's (the ``advance`` op); each
NAT runs on ``now + its offset``.

Randomness is seeded: from a topology, each NAT's engine gets its gateway's
seed (as the netns gateway does); built by hand, one ``random.Random(seed)``
hands each NAT its own.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

from natlab.datapaths.memory import MemoryDatapath
from natlab.engine import Engine, Forward, Hairpin, MappingView, Policy, Side
from natlab.engine.types import AddressLike, to_int, to_str
from natlab.gateway.service import Gateway
from natlab.gateway.spec import GatewaySpec, upstream_of
from natlab.packet import build
from natlab.packet.headers import PROTO_UDP, parse_packet
from natlab.realisers.memory.stack import HostStack, TcpConn

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
    """One NAT of the network: its gateway service, its inside prefix, the realm of its outside."""

    name: str
    gateway: Gateway
    inside: ipaddress.IPv4Network
    realm: Optional[str]  # where its outside is
    portmap: Any = None
    """Its port mapping server on the inside address (:mod:`natlab.datapaths.memory.portmap`)."""
    link: dict = dataclasses.field(default_factory=lambda: {"bytes_sent": 0, "bytes_received": 0})
    """Bytes it forwarded out and in (UPnP's WAN totals)."""

    @property
    def engine(self) -> Engine:
        return self.gateway.engine

    @property
    def events(self) -> Any:
        """The gateway's event ring, numbered as ``natlab events`` numbers them."""
        return self.gateway.events

    @property
    def seq(self) -> int:
        return self.gateway.seq

    @property
    def offset(self) -> float:
        """How far this NAT's clock is ahead of the network's (``advance_gateway``)."""
        return self.gateway.offset

    @property
    def pool(self) -> frozenset[int]:
        return frozenset(to_int(a) for a in self.gateway.pool)

    def routes_to(self, address: int) -> bool:
        """Whether the outside must send ``address`` to this NAT: pool or static external."""
        return any(to_int(a) == address for a in self.engine.external_addresses)

    def mappings(self) -> tuple[MappingView, ...]:
        return self.engine.mappings()


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
        self.datapath = MemoryDatapath(self)

    @classmethod
    def from_topology(cls, topo: Any, seed: Optional[int] = None) -> "MemNet":
        """The in-memory twin of a :class:`~natlab.topology.model.Topology`.

        ``seed`` (default: the topology's) fixes every gateway's ports; with the
        topology's own seed each engine gets exactly the seed its netns gateway gets.
        """
        from natlab.behaviours.folders import behaviour_dirs
        from natlab.topology.addressing import derive_seed

        lab_seed = topo.seed if seed is None else seed
        net = cls(lab_seed, stacks=True, name=topo.name)
        realm_of = {gw.inside: gw.name for gw in topo.gateways}
        dirs = behaviour_dirs(topo)
        pending = list(topo.gateways)
        while pending:  # outer NATs first: a chained NAT needs its parent's realm
            ready = [gw for gw in pending if realm_of.get(gw.outside) in (None, *net.nats)]
            if not ready:
                raise ValueError(f"gateways chained in a loop: {[gw.name for gw in pending]}")
            for gw in ready:
                engine_seed = gw.seed if lab_seed == topo.seed else derive_seed(lab_seed, gw.name)
                net.add_nat(gw.name, gw.resolved_policy(), [str(a) for a in gw.pool],
                            str(topo.network(gw.inside).subnet),
                            behind=realm_of.get(gw.outside), seed=engine_seed, preset=gw.preset,
                            outside_subnet=str(topo.network(gw.outside).subnet), behaviour_dirs=dirs,
                            inside_address=str(gw.address), upstream_address=upstream_of(topo, gw))
                pending.remove(gw)
        for host in topo.hosts:
            net.add_host(host.name, [str(a) for a in host.addresses], behind=realm_of.get(host.legs[0].network))
        for nat in net.nats.values():
            net._flush_portmap(nat)  # the announcements a starting port mapping server sends
        return net

    # -- building ------------------------------------------------------------------
    def add_nat(self, name: str, policy: Policy, pool: Sequence[AddressLike], inside_prefix: str,
                *, behind: Optional[str] = None, seed: Optional[int] = None, preset: str = "",
                outside_subnet: str = "", behaviour_dirs: Sequence[str] = (), inside_address: str = "",
                upstream_address: str = "") -> _Nat:
        """A NAT with ``pool`` on its outside (the internet, or ``behind``'s inside).

        ``seed`` seeds its engine; by default it is drawn from the network's RNG.
        ``preset`` (for ``status``), ``outside_subnet`` (a live policy is checked
        against it), ``behaviour_dirs`` (where ``configure`` may load preset
        files), ``inside_address`` (the gateway's own, where NAT-PMP, PCP and
        UPnP are served; default the first usable of ``inside_prefix``) and
        ``upstream_address`` (the inside address of the NAT above, for
        ``pcp_interworking``) are what a lab's gateway spec says.
        """
        from natlab.behaviours.presets import policy_to_dict

        self._check_new(name)
        self._check_realm(behind)
        engine_seed = self.rng.getrandbits(64) if seed is None else seed
        addresses = tuple(to_str(to_int(a)) for a in pool)
        spec = GatewaySpec(lab=self.name, name=name, netns="", inside_ifaces=(), outside_iface="",
                           inside_subnets=(inside_prefix,), outside_subnet=outside_subnet, pool=addresses,
                           preset=preset, policy=policy_to_dict(policy), seed=engine_seed, run_dir="",
                           behaviour_dirs=tuple(behaviour_dirs), datapath=self.datapath.name,
                           extra={"portmap": {"inside_address": inside_address,
                                              "upstream_address": upstream_address}})
        engine = Engine(policy, pool, random.Random(engine_seed))
        nat = _Nat(name, self.datapath.gateway(spec, engine, policy), ipaddress.IPv4Network(inside_prefix), behind)
        self.nats[name] = nat
        nat.portmap = self.datapath.portmap(nat)
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

    def gateway(self, name: str) -> Gateway:
        """The NAT's gateway service (the same class a netns gateway process runs)."""
        return self.nats[name].gateway

    def request(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        """A control request to one NAT, as its control socket would take it; errors raised."""
        try:
            return self.nats[name].gateway.request(request)
        finally:
            self._flush_portmap(self.nats[name])

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
        return self.nats[nat].gateway.now()

    def advance(self, seconds: float) -> None:
        """Move everyone's clock on and let every NAT expire what is due."""
        self.now += seconds
        for nat in self.nats.values():
            nat.gateway.expire()
            self._flush_portmap(nat)

    def advance_gateway(self, name: str, seconds: float) -> dict[str, Any]:
        """Move one NAT's clock on (time travel) and let it expire what is due (the ``advance`` op)."""
        return self.request(name, {"op": "advance", "seconds": seconds})

    def reconfigure(self, name: str, policy: Policy, detail: str = "") -> None:
        """Apply a new policy to one NAT live (mappings stay unless the mapping behaviour changed)."""
        self.nats[name].gateway.apply_policy(policy, detail)

    def flush(self, name: str) -> dict[str, Any]:
        """Reboot one NAT: every dynamic mapping is forgotten."""
        return self.request(name, {"op": "flush"})

    def set_pool(self, name: str, pool: Sequence[AddressLike]) -> dict[str, Any]:
        """Change one NAT's external addresses; routing follows the engine's pool at once."""
        return self.request(name, {"op": "set-pool", "pool": [to_str(to_int(a)) for a in pool]})

    def _flush_portmap(self, nat: _Nat) -> None:
        if nat.portmap is not None:
            nat.portmap.flush_due()

    def realm_stacks(self, realm: Optional[str]) -> list[HostStack]:
        """The stacks of every host in ``realm`` (a NAT's name, or None: the internet)."""
        return [h.stack for h in self.hosts.values() if h.realm == realm]

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
        own = self.nats[realm] if realm is not None else None
        if own is not None and own.portmap is not None and own.portmap.wants(data):
            for answer in own.portmap.receive(data):  # the gateway's own sockets on its inside address
                self._route(answer, realm, ())
            return Delivered(own.name, path)
        for nat in self.nats.values():
            if nat.realm == realm and nat.routes_to(dst):
                return self._through(nat, data, Side.OUTSIDE, path)
        if realm is not None and ipaddress.IPv4Address(dst) not in self.nats[realm].inside:
            return self._through(self.nats[realm], data, Side.INSIDE, path)
        return Dropped(_realm_name(realm), "no-route", path)

    def route_from(self, nat: str, data: bytes, inside: bool) -> Outcome:
        """A packet a NAT's gateway originates, from its inside or its outside (the memory datapath)."""
        gw = self.nats[nat]
        return self._route(data, gw.name if inside else gw.realm, (gw.name,))

    def _through(self, nat: _Nat, data: bytes, side: Side, path: tuple[str, ...]) -> Outcome:
        verdict = nat.gateway.process(data, side)
        path = path + (nat.name,)
        kind = type(verdict)
        if kind is Forward:
            nat.link["bytes_sent" if side is Side.INSIDE else "bytes_received"] += len(verdict.data)
            if side is Side.OUTSIDE and nat.portmap is not None and nat.routes_to(int.from_bytes(verdict.data[16:20], "big")):
                for answer in nat.portmap.from_outside(bytes(verdict.data)):  # for the gateway itself
                    self._route(answer, nat.name, (nat.name,))
                return Delivered(nat.name, path)
            onward = nat.name if side is Side.OUTSIDE else nat.realm
            return self._route(bytes(verdict.data), onward, path)
        if kind is Hairpin:
            out = nat.gateway.send_hairpin(verdict.data)  # routed back in by its sender
            if out is None:
                return Dropped(nat.name, "emit-error", path)
            return dataclasses.replace(out, path=path[:-1] + out.path)
        if verdict is None:  # truncated or an engine error: the gateway recorded why
            return Dropped(nat.name, nat.gateway.events[-1].get("reason", "dropped"), path)
        return Dropped(nat.name, verdict.reason.value, path)
