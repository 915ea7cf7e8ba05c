"""A topology as the picture the page draws: networks, nodes and the links between them.

Layout is decided here, once, so the page only draws: networks are horizontal
bars in rows (the internet on top, each NAT's inside one row below its
outside), and each node sits next to the networks it joins. Coordinates are in
an abstract 1000-wide box the SVG scales.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["layout", "nat_chain", "network_chain"]

WIDTH = 1000
ROW = 150
TOP = 40


def _depths(topo: Any) -> dict[str, int]:
    """Row of each network: 0 for networks no gateway has inside, then one per NAT level."""
    inside_of = {gw.inside: gw for gw in topo.gateways}
    depth: dict[str, int] = {}

    def of(net: str, seen: frozenset = frozenset()) -> int:
        if net in depth:
            return depth[net]
        gw = inside_of.get(net)
        d = 0 if gw is None or net in seen else of(gw.outside, seen | {net}) + 1
        depth[net] = d
        return d

    for net in topo.networks:
        of(net.name)
    return depth


def nat_chain(topo: Any, host: str) -> list[str]:
    """The gateways a host's packets to the internet cross, nearest first."""
    node = topo.node(host)
    return network_chain(topo, node.legs[0].network if node.legs else None)


def network_chain(topo: Any, net: Optional[str]) -> list[str]:
    """The gateways packets from network ``net`` to the internet cross, nearest first."""
    inside_of = {gw.inside: gw for gw in topo.gateways}
    chain: list[str] = []
    while net in inside_of and inside_of[net].name not in chain:
        gw = inside_of[net]
        chain.append(gw.name)
        net = gw.outside
    return chain


def layout(topo: Any, policies: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Networks and nodes with positions; ``policies`` gives each gateway's preset and class."""
    depth = _depths(topo)
    rows: dict[int, list[str]] = {}
    for net in topo.networks:
        rows.setdefault(depth[net.name], []).append(net.name)
    networks = []
    span: dict[str, tuple[float, float, float]] = {}
    for d, names in sorted(rows.items()):
        width = WIDTH / len(names)
        for i, name in enumerate(names):
            x0, x1, y = i * width + 20, (i + 1) * width - 20, TOP + d * ROW * 2
            span[name] = (x0, x1, y)
            subnet = str(topo.network(name).subnet)
            networks.append({"name": name, "subnet": subnet, "x0": x0, "x1": x1, "y": y})
    nodes = []
    for gw in topo.gateways:
        x0, x1, y_in = span[gw.inside]
        ox0, ox1, y_out = span[gw.outside]
        x = (x0 + x1) / 2
        nodes.append({"name": gw.name, "kind": "gateway", "x": x, "y": (y_in + y_out) / 2,
                      "networks": [gw.outside, gw.inside], "addresses": [str(a) for a in gw.pool],
                      **policies.get(gw.name, {})})
    for router in topo.routers:
        nets = [leg.network for leg in router.legs]
        xs = [sum(span[n][:2]) / 2 for n in nets]
        ys = [span[n][2] for n in nets]
        nodes.append({"name": router.name, "kind": "router", "x": sum(xs) / len(xs),
                      "y": sum(ys) / len(ys) + ROW / 2, "networks": nets,
                      "addresses": [str(a.ip) for leg in router.legs for a in leg.addresses]})
    on_net: dict[str, list[Any]] = {}
    for host in topo.hosts:
        on_net.setdefault(host.legs[0].network, []).append(host)
    for net, hosts in on_net.items():
        x0, x1, y = span[net]
        taken = [n["x"] for n in nodes if net in n["networks"]]
        slots = [x0 + (x1 - x0) * (k + 1) / (len(hosts) + len(taken) + 1) for k in range(len(hosts) + len(taken))]
        for x_taken in taken:  # leave the slot nearest each gateway or router empty
            slots.remove(min(slots, key=lambda x: abs(x - x_taken)))
        for x, host in zip(slots, hosts):
            nodes.append({"name": host.name, "kind": "host", "x": x, "y": y + ROW * 0.6,
                          "networks": [net], "addresses": [str(a.ip) for a in host.legs[0].addresses]})
    height = TOP + (max(rows) * ROW * 2 if rows else 0) + ROW
    return {"name": topo.name, "width": WIDTH, "height": height, "networks": networks, "nodes": nodes}
