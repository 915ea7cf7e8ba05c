"""From a parsed topology file to a frozen :class:`Topology`: checks and address picking.

Theory of operation
-------------------
:func:`build` runs in three passes over a :class:`TopologyFile`:

1. *References*: every network named exists, node names are unique, each network
   is the inside of at most one gateway, gateway chains end on a WAN network.
2. *Explicit addresses*: each lies in its network's subnet, is not its network or
   broadcast address, and no address is used twice on one network (gateway inside
   addresses and pool addresses included).
3. *Picked addresses*, lowest free first, in a fixed order so that results are
   stable: gateway inside addresses (default: first usable), router legs, gateway
   pools, hosts.

Every problem is a :class:`TopologyError` naming the key path; a ``locate``
callback turns that path into a line of the source file. Passes 1 and 2 collect
every problem (entries whose references are wrong sit out pass 2) and raise them
together as :class:`~natlab.errors.ConfigErrors`; pass 3 runs only on a clean file.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Callable, Collection, Iterator, Optional

from natlab.errors import ErrorList, TopologyError
from natlab.model_errors import did_you_mean
from natlab.topology import routing
from natlab.topology.model import (
    Gateway, Host, Leg, Network, Router, Topology, TopologyFile,
)

KeyPath = tuple[object, ...]
Locate = Callable[[KeyPath], Optional[int]]
RESERVED_NODE_NAMES = frozenset({"sw"})
"""``natlab-<lab>-sw`` is the lab's switch namespace."""


class _Errors:
    """Collects TopologyErrors with file, line and dotted key for a key path."""

    def __init__(self, file: Optional[str], locate: Locate) -> None:
        self.file = file
        self.locate = locate
        self.found = ErrorList()

    def __call__(self, path: KeyPath, what: str, got: object = None,
                 hint: Optional[str] = None) -> TopologyError:
        return TopologyError(what, got=got, hint=hint, file=self.file,
                             line=self.locate(path),
                             key=".".join(str(p) for p in path))

    def add(self, path: KeyPath, what: str, got: object = None,
            hint: Optional[str] = None) -> None:
        self.found.add(self(path, what, got, hint))


def build(doc: TopologyFile, *, file: Optional[str] = None,
          locate: Locate = lambda path: None,
          broken: Collection[str] = ()) -> Topology:
    """Check ``doc`` and decide every address, route and seed.

    ``broken`` names networks the file has but that failed validation (already
    reported): references to them are not errors here.
    """
    inside_of, book = _checked(doc, file, locate, broken)
    gw_addr = {name: g.address or next(doc.networks[g.inside].subnet.hosts())
               for name, g in doc.gateways.items()}
    router_addr = {
        name: {net: book.pick_first(net, ("routers", name, "addresses", net),
                                    r.addresses.get(net))
               for net in r.networks}
        for name, r in doc.routers.items()}
    pools = {name: tuple(g.pool) if g.pool else (book.pick(g.outside),)
             for name, g in doc.gateways.items()}
    host_addr = {name: _host_addresses(h) or (book.pick(h.network),)
                 for name, h in doc.hosts.items()}

    networks = tuple(Network(n, e.subnet, inside_of.get(n)) for n, e in doc.networks.items())
    subnet = {n.name: n.subnet for n in networks}

    def iface(addr: IPv4Address, net: str) -> IPv4Interface:
        return IPv4Interface(f"{addr}/{subnet[net].prefixlen}")

    plan = routing.Plan(networks, {n: {net: a for net, a in legs.items()}
                                   for n, legs in router_addr.items()}, gw_addr)
    gateways = tuple(
        Gateway(name=name, kind="gateway",
                legs=(Leg("in0", g.inside, (iface(gw_addr[name], g.inside),)),
                      Leg("out0", g.outside, tuple(iface(a, g.outside) for a in pools[name]))),
                routes=plan.routes_from(g.outside),
                behaviour=g.behaviour, inside=g.inside, outside=g.outside,
                address=gw_addr[name], pool=pools[name], overrides=dict(g.overrides),
                seed=derive_seed(doc.seed, name), datapath=g.datapath,
                datapath_options={"kernel_cache": g.kernel_cache.model_dump(), "dpdk": g.dpdk.model_dump()})
        for name, g in doc.gateways.items())
    routers = tuple(
        Router(name=name, kind="router",
               legs=tuple(Leg(f"eth{i}", net, (iface(router_addr[name][net], net),))
                          for i, net in enumerate(r.networks)),
               routes=plan.routes_for_router(name))
        for name, r in doc.routers.items())
    hosts = tuple(
        Host(name=name, kind="host",
             legs=(Leg("eth0", h.network, tuple(iface(a, h.network) for a in host_addr[name])),),
             routes=plan.routes_from(h.network), command=h.command)
        for name, h in doc.hosts.items())
    return Topology(doc.name, doc.seed, networks, hosts, gateways, routers, file)


def check(doc: TopologyFile, *, file: Optional[str] = None,
          locate: Locate = lambda path: None, broken: Collection[str] = ()) -> None:
    """Passes 1 and 2 of :func:`build` only: for a file with ``broken`` parts cut out,
    where addresses cannot be picked on the missing networks."""
    _checked(doc, file, locate, broken)


def _checked(doc: TopologyFile, file: Optional[str], locate: Locate,
             broken: Collection[str]) -> tuple[dict[str, str], "_AddressBook"]:
    err = _Errors(file, locate)
    inside_of = _check_references(doc, err, frozenset(broken))
    book = _AddressBook(doc, err)
    book.reserve_explicit()
    err.found.raise_if_any()
    return inside_of, book


def derive_seed(lab_seed: int, gateway: str) -> int:
    """A gateway's engine seed: stable across runs, different per gateway."""
    digest = hashlib.sha256(f"{lab_seed}:{gateway}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _host_addresses(h) -> tuple[IPv4Address, ...]:
    if h.addresses:
        return tuple(h.addresses)
    return (h.address,) if h.address else ()


def _check_references(doc: TopologyFile, err: _Errors, broken: frozenset[str]) -> dict[str, str]:
    """Check names and references; returns {inside network: its gateway}."""
    _check_node_names(doc, err)
    nets = doc.networks
    known = ", ".join(nets)

    def need(path: KeyPath, net: str) -> bool:
        if net in nets:
            return True
        if net not in broken:
            err.add(path, "no such network", got=net,
                    hint=did_you_mean(net, list(nets)) + f"networks are: {known}")
        return False

    inside_of: dict[str, str] = {}
    for name, g in doc.gateways.items():
        inside_ok = need(("gateways", name, "inside"), g.inside)
        outside_ok = need(("gateways", name, "outside"), g.outside)
        if not (inside_ok and outside_ok):
            continue
        if g.inside == g.outside:
            err.add(("gateways", name, "outside"), "a gateway's inside and outside must differ",
                    got=g.outside, hint="put the hosts behind it on their own network")
        elif nets[g.inside].subnet.overlaps(nets[g.outside].subnet):
            err.add(("gateways", name, "outside"), "inside and outside subnets overlap",
                    got=f"{nets[g.inside].subnet} / {nets[g.outside].subnet}")
        elif g.inside in inside_of:
            err.add(("gateways", name, "inside"),
                    f"network is already the inside of gateway '{inside_of[g.inside]}'",
                    got=g.inside, hint="each inside network has one gateway")
        else:
            inside_of[g.inside] = name
    for name, h in doc.hosts.items():
        need(("hosts", name, "network"), h.network)
    for name, r in doc.routers.items():
        _check_router(name, r, need, inside_of, err)
    _check_chains(doc, inside_of, err)
    return inside_of


def _check_node_names(doc: TopologyFile, err: _Errors) -> None:
    seen: dict[str, str] = {}
    for kind in ("gateways", "routers", "hosts"):
        for name in getattr(doc, kind):
            if name in RESERVED_NODE_NAMES:
                err.add((kind, name), "node name is reserved", got=name,
                        hint="'sw' names the lab's switch namespace; pick another")
            elif name in seen:
                err.add((kind, name), f"node name already used in {seen[name]}",
                        got=name, hint="hosts, gateways and routers share one namespace")
            else:
                seen[name] = kind


def _check_router(name: str, r, need: Callable[[KeyPath, str], bool],
                  inside_of: dict[str, str], err: _Errors) -> None:
    for i, net in enumerate(r.networks):
        if need(("routers", name, "networks", i), net) and net in inside_of:
            err.add(("routers", name, "networks", i),
                    f"routers join WAN networks; this one is behind gateway "
                    f"'{inside_of[net]}'", got=net)
    if len(set(r.networks)) != len(r.networks):
        err.add(("routers", name, "networks"), "network listed twice", got=r.networks)
    for net in r.addresses:
        if net not in r.networks:
            err.add(("routers", name, "addresses", net),
                    "address for a network the router is not on", got=net,
                    hint=f"add it to routers.{name}.networks")


def _check_chains(doc: TopologyFile, inside_of: dict[str, str], err: _Errors) -> None:
    """Following gateway outsides from any network must reach a WAN network."""
    looped: set[str] = set()
    for start in inside_of:
        net, path = start, [start]
        while net in inside_of:
            net = doc.gateways[inside_of[net]].outside
            if net in path:
                gw = inside_of[start]
                if not looped & set(path):  # one report per loop
                    err.add(("gateways", gw, "outside"), "gateways form a loop",
                            got=" -> ".join([*path, net]),
                            hint="a chain of gateways must end on a network no gateway "
                                 "is inside of")
                looped.update(path)
                break
            path.append(net)


class _AddressBook:
    """Which address is taken on which network, and by whom (a key path)."""

    def __init__(self, doc: TopologyFile, err: _Errors) -> None:
        self.doc = doc
        self.err = err
        self.taken: dict[tuple[str, IPv4Address], KeyPath] = {}

    def _explicit(self) -> Iterator[tuple[KeyPath, str, IPv4Address]]:
        """Explicit addresses on networks that exist (bad references are reported already)."""
        for entry in self._explicit_all():
            if entry[1] in self.doc.networks:
                yield entry

    def _explicit_all(self) -> Iterator[tuple[KeyPath, str, IPv4Address]]:
        for name, g in self.doc.gateways.items():
            if g.address is not None:
                yield ("gateways", name, "address"), g.inside, g.address
            for i, a in enumerate(g.pool or ()):
                yield ("gateways", name, "pool", i), g.outside, a
        for name, r in self.doc.routers.items():
            for net, a in r.addresses.items():
                yield ("routers", name, "addresses", net), net, a
        for name, h in self.doc.hosts.items():
            if h.address is not None:
                yield ("hosts", name, "address"), h.network, h.address
            for i, a in enumerate(h.addresses or ()):
                yield ("hosts", name, "addresses", i), h.network, a

    def reserve_explicit(self) -> None:
        # A gateway's default inside address is fixed (first usable), not "lowest
        # free": a host given that address explicitly is a clash, not a shuffle.
        for name, g in self.doc.gateways.items():
            if g.address is None and g.inside in self.doc.networks:
                first = next(self.doc.networks[g.inside].subnet.hosts())
                self.taken[(g.inside, first)] = ("gateways", name, "address")
        for path, net, addr in self._explicit():
            subnet = self.doc.networks[net].subnet
            if addr not in subnet:
                self.err.add(path, f"address is outside network '{net}'", got=str(addr),
                             hint=f"pick one in {subnet}")
            elif subnet.prefixlen < 31 and addr in (subnet.network_address,
                                                    subnet.broadcast_address):
                self.err.add(path, "address is the network or broadcast address",
                             got=str(addr), hint=f"pick a usable one in {subnet}")
            elif (net, addr) in self.taken:
                other = ".".join(str(p) for p in self.taken[(net, addr)])
                self.err.add(path, f"address already used by {other}", got=str(addr),
                             hint="every address on a network must be unique; a gateway's "
                                  "inside address defaults to the first usable one")
            else:
                self.taken[(net, addr)] = path

    def pick_first(self, net: str, path: KeyPath,
                   explicit: Optional[IPv4Address]) -> IPv4Address:
        """The explicit address (already reserved) or the lowest free one."""
        return explicit if explicit is not None else self.pick(net, path)

    def pick(self, net: str, path: KeyPath = ()) -> IPv4Address:
        subnet: IPv4Network = self.doc.networks[net].subnet
        for addr in subnet.hosts():
            if (net, addr) not in self.taken:
                self.taken[(net, addr)] = path
                return addr
        raise self.err(("networks", net), "network has no free address left",
                       got=str(subnet), hint="use a larger subnet")
