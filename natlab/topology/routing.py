"""Static routes for every node, decided from the topology alone.

Theory of operation
-------------------
A network that is some gateway's *inside* is a home (or a CGN's customer side):
everything on it routes by default via that gateway's inside address. This is
what makes chains work: a home gateway's outside is the CGN's inside network, so
its default route points at the CGN.

Networks no gateway is inside of are *WAN* networks. Routers join WAN networks
without NAT; a breadth-first search over "network -- router -- network" gives,
for each WAN network reachable from where a node sits, the first router to hand
packets to. A node on a WAN network with no routers needs no routes at all.
"""

from __future__ import annotations

from collections import deque
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable

from natlab.topology.model import Network, Route

DEFAULT = IPv4Network("0.0.0.0/0")


class Plan:
    def __init__(self, networks: Iterable[Network],
                 router_addr: dict[str, dict[str, IPv4Address]],
                 gateway_addr: dict[str, IPv4Address]) -> None:
        self.networks = {n.name: n for n in networks}
        self.router_addr = router_addr
        self.gateway_addr = gateway_addr
        self.routers_on: dict[str, list[str]] = {n: [] for n in self.networks}
        for router, legs in router_addr.items():
            for net in legs:
                self.routers_on[net].append(router)

    def routes_from(self, net: str) -> tuple[Route, ...]:
        """Routes for a host or gateway (outside leg) attached to ``net`` only."""
        gateway = self.networks[net].gateway
        if gateway is not None:
            return (Route(DEFAULT, self.gateway_addr[gateway]),)
        return self._wan_routes([net], exclude=None)

    def routes_for_router(self, router: str) -> tuple[Route, ...]:
        return self._wan_routes(list(self.router_addr[router]), exclude=router)

    def _wan_routes(self, starts: list[str], exclude: str | None) -> tuple[Route, ...]:
        first_hop: dict[str, IPv4Address | None] = {n: None for n in starts}
        queue = deque(starts)
        while queue:
            net = queue.popleft()
            for router in self.routers_on[net]:
                if router == exclude:
                    continue
                for other in self.router_addr[router]:
                    if other in first_hop:
                        continue
                    hop = first_hop[net] or self.router_addr[router][net]
                    first_hop[other] = hop
                    queue.append(other)
        return tuple(Route(self.networks[n].subnet, hop)
                     for n, hop in first_hop.items() if hop is not None)
