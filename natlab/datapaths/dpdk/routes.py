"""Where a packet goes next: the gateway's interfaces, routes and neighbours.

Theory of operation
-------------------
The lab configures the gateway's namespace as for any router (addresses on
``in0``/``out0``, a default route); with DPDK owning the wire the kernel never
routes, so :func:`read_kernel` copies that configuration once at start into
frozen values (:class:`Iface`, :class:`Route`), and :class:`RouteTable`
answers longest-prefix matches from them. :class:`Neighbours` is the ARP
cache (RFC 826) with the packets waiting for an answer, a few per address,
bounded and aged (RFC 1122 2.3.2.2: keep at least one; Linux keeps about a hundred).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Sequence

PENDING_PER_ADDRESS = 64
"""Packets held per unresolved neighbour (Linux holds ~100: unres_qlen_bytes)."""
ARP_RETRY = 1.0
ARP_TRIES = 3


@dataclass(frozen=True)
class Iface:
    name: str
    port: int
    """The Dataplane's port index."""
    inside: bool
    mac: bytes
    mtu: int
    addresses: tuple[tuple[int, int], ...]
    """(address, prefix length) configured on it."""


@dataclass(frozen=True)
class Route:
    network: int
    prefix: int
    port: int
    via: Optional[int]
    """The next hop (None: on link)."""

    def matches(self, address: int) -> bool:
        if self.prefix == 0:
            return True
        shift = 32 - self.prefix
        return address >> shift == self.network >> shift


@dataclass(frozen=True)
class Hop:
    port: int
    address: int
    """The neighbour to send to: the destination itself or the route's gateway."""


class RouteTable:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: -r.prefix)

    def lookup(self, dst: int) -> Optional[Hop]:
        for route in self.routes:
            if route.matches(dst):
                return Hop(route.port, route.via if route.via is not None else dst)
        return None


@dataclass
class _Pending:
    packets: deque = field(default_factory=lambda: deque(maxlen=PENDING_PER_ADDRESS))
    asked: float = 0.0
    tries: int = 0


class Neighbours:
    """(port, address) -> MAC, and what waits for an answer."""

    def __init__(self) -> None:
        self.macs: dict[tuple[int, int], bytes] = {}
        self.pending: dict[tuple[int, int], _Pending] = {}
        self.dropped = 0
        """Packets given up on (no answer after ARP_TRIES, or too many waiting)."""

    def learn(self, port: int, address: int, mac: bytes) -> tuple[bool, list[bytes]]:
        """Record an answer; (the MAC changed, the packets that waited for it)."""
        key = (port, address)
        changed = self.macs.get(key) not in (None, mac)
        self.macs[key] = mac
        waiting = self.pending.pop(key, None)
        return changed, list(waiting.packets) if waiting else []

    def get(self, port: int, address: int) -> Optional[bytes]:
        return self.macs.get((port, address))

    def wait(self, port: int, address: int, packet: bytes, now: float) -> bool:
        """Hold ``packet`` until ``address`` answers; True when a request should go out now."""
        key = (port, address)
        entry = self.pending.setdefault(key, _Pending())
        if len(entry.packets) == entry.packets.maxlen:
            self.dropped += 1
        entry.packets.append(packet)
        if entry.tries == 0:
            entry.asked, entry.tries = now, 1
            return True
        return False

    def retries(self, now: float) -> list[tuple[int, int]]:
        """The (port, address) to ask again now; those asked ARP_TRIES times are given up."""
        again = []
        for key, entry in list(self.pending.items()):
            if now - entry.asked < ARP_RETRY:
                continue
            if entry.tries >= ARP_TRIES:
                self.dropped += sum(1 for p in entry.packets if p)
                del self.pending[key]
                continue
            entry.asked, entry.tries = now, entry.tries + 1
            again.append(key)
        return again


def read_kernel(names: Sequence[str], inside: Sequence[bool], macs: Sequence[bytes]) -> tuple[list[Iface], list[Route]]:
    """The interfaces ``names`` (port i = names[i]) and the main table's routes over them,
    as the lab configured this namespace (pyroute2)."""
    from pyroute2 import IPRoute

    ifaces: list[Iface] = []
    routes: list[Route] = []
    with IPRoute() as ipr:
        by_index = {}
        for port, name in enumerate(names):
            found = ipr.link_lookup(ifname=name)
            if not found:
                from natlab.errors import LabError

                raise LabError(f"no interface {name} in this namespace")
            index = found[0]
            by_index[index] = port
            link = ipr.get_links(index)[0]
            addrs = tuple((int(ipaddress.IPv4Address(a.get_attr("IFA_ADDRESS"))), a["prefixlen"])
                          for a in ipr.get_addr(index=index, family=2))
            ifaces.append(Iface(name, port, inside[port], macs[port], int(link.get_attr("IFLA_MTU")), addrs))
        for r in ipr.get_routes(family=2, table=254):
            oif = r.get_attr("RTA_OIF")
            if oif not in by_index:
                continue
            dst = r.get_attr("RTA_DST")
            via = r.get_attr("RTA_GATEWAY")
            routes.append(Route(int(ipaddress.IPv4Address(dst)) if dst else 0, r["dst_len"],
                                by_index[oif], int(ipaddress.IPv4Address(via)) if via else None))
    return ifaces, routes
