"""The memory datapath: gateways of the in-memory network, fed in process as hosts send.

The :class:`~natlab.realisers.memory.network.MemNet` routes a packet to a NAT
and hands it to that NAT's :class:`~natlab.gateway.service.Gateway`
(:meth:`~natlab.gateway.service.Gateway.process`); the verdict decides where it
goes next. What a gateway originates (emits, hairpins) comes back through
:class:`MemorySender` and is routed from the gateway, by destination, as a
kernel routes a raw socket's packets. The clock is the network's manual one.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Optional

from natlab.gateway.service import Gateway
from natlab.packet import build

__all__ = ["MemoryDatapath", "MemorySender"]


class MemorySender:
    """A gateway's emits, routed into the network: inside if the destination is, else outside."""

    def __init__(self, route: Callable[[bytes, bool], Any], inside: ipaddress.IPv4Network) -> None:
        self.route = route
        self.inside = inside

    def send(self, packet: bytes | bytearray) -> Any:
        data = bytes(packet)
        dst = ipaddress.IPv4Address(data[16:20])
        return self.route(data, dst in self.inside)


class MemoryDatapath:
    """The datapath of one in-memory network (``net``: a MemNet)."""

    name = "memory"
    summary = "the in-memory network: packets handed to the gateway service in process"
    in_process = True

    def __init__(self, net: Any = None) -> None:
        self.net = net

    def unavailable(self) -> Optional[str]:
        return None

    def gateway(self, spec: Any, engine: Any, policy: Any) -> Gateway:
        """The service on the network's manual clock; no wall clock, so events carry no ``ts``."""
        net = self.net
        inside = ipaddress.IPv4Network(spec.inside_subnets[0])

        def route(data: bytes, to_inside: bool) -> Any:
            return net.route_from(spec.name, data, to_inside)

        return Gateway(spec, engine, policy, sender=MemorySender(route, inside),
                       clock=lambda: net.now, wallclock=None)

    def portmap(self, nat: Any) -> Any:
        """The NAT's port mapping server on its inside address (None if its engine has none)."""
        from natlab.datapaths.memory.portmap import MemoryPortmap
        from natlab.gateway.portmap_shell import attach
        from natlab.portmap.service import LinkStats

        net = self.net

        def link_stats() -> LinkStats:
            c = nat.gateway.engine.counters
            return LinkStats(nat.link["bytes_sent"], nat.link["bytes_received"], c.translated_out, c.translated_in)

        shell = attach(nat.gateway, link_stats=link_stats)
        if shell is None:
            return None
        portmap = MemoryPortmap(shell, lambda packet: net.route_from(nat.name, packet, True),
                                lambda: net.realm_stacks(nat.name))

        def upstream(payload: bytes) -> None:  # PCP to the NAT above, from the gateway's own endpoint
            own = shell.upstream_endpoint
            if own is not None and shell.upstream is not None:
                net.route_from(nat.name, build.udp(own.addr, own.port, shell.upstream, 5351, payload), False)

        nat.portmap = portmap  # before the first upstream exchange: its answer comes back to it
        shell.connect_upstream(upstream)
        return portmap

    def serve(self, gateway: Gateway) -> int:
        """Nothing to run: the network moves packets as its hosts send them."""
        from natlab.realisers.base import Unsupported

        raise Unsupported("the memory datapath has no loop to serve",
                          hint="send packets with MemNet.send; each NAT's Gateway sees them at once")
