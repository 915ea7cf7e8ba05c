"""Kernel plumbing for labs, with pyroute2: namespaces, bridges, veths, addresses.

Theory of operation
-------------------
Nothing is ever created in the caller's (root) namespace. Each lab has a switch
namespace ``natlab-<lab>-sw`` holding one bridge per network; every host, gateway
and router has its own namespace ``natlab-<lab>-<node>``. A veth pair is created
*inside the switch namespace* with its peer placed directly into the node's
namespace, so it never appears in the root namespace, not even for a moment.
Both ends carry the alias ``natlab:<lab>``: the tag that says whose it is.

Removal is by namespace: deleting a namespace deletes its veths (and so their
peers), bridges, addresses, routes and firewall rules.

pyroute2's ``NetNS(name)`` *creates* a missing namespace by default; every open
here passes ``flags=0`` so a namespace removed meanwhile stays removed.
"""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Interface
from typing import Any, Iterable, Optional

from natlab.errors import LabError
from natlab.topology.model import Leg, Route


# pyroute2 is imported on first use: it costs ~0.6 s, and most natlab commands never
# touch a namespace (behaviours, explain, explore on memory, --version).
def NetNS(name: str, **kw: Any) -> Any:  # noqa: N802 - stands for pyroute2's class
    from pyroute2 import NetNS as _NetNS

    return _NetNS(name, **kw)


class _Netns:
    def __getattr__(self, attr: str) -> Any:
        from pyroute2 import netns as real

        return getattr(real, attr)


netns = _Netns()
"""pyroute2's ``netns`` module (listnetns, create, remove), loaded on first use."""

PREFIX = "natlab-"
ALIAS_PREFIX = "natlab:"
BRIDGE_AGEING_CS = 30000
"""Bridge FDB ageing in centiseconds (300 s, the usual default for switches)."""

FORWARDER_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    "net.ipv4.icmp_ratelimit": "0",
    # A gateway's pool can lose its first address (set-pool); keep the others and their route.
    "net.ipv4.conf.all.promote_secondaries": "1",
    "net.ipv4.conf.default.promote_secondaries": "1",
}
"""For gateways and routers: forward, never drop asymmetric traffic, never redirect."""
GATEWAY_SYSCTLS = {**FORWARDER_SYSCTLS, "net.ipv4.ip_forward": "0"}
"""For a gateway: the same, but closed until its process is up. The gateway daemon turns
forwarding on once its queue rules are in place and off before it lets go of them, so a
gateway namespace is never a plain router (see :mod:`natlab.datapaths.nfqueue.rules`)."""
COMMON_SYSCTLS = {
    # IPv6 chatter (router solicitations, MLD) would only add noise to captures.
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}


def ns_name(lab: str, node: str) -> str:
    return f"{PREFIX}{lab}-{node}"


def switch_ns(lab: str) -> str:
    return ns_name(lab, "sw")


def tag(lab: str) -> str:
    return f"{ALIAS_PREFIX}{lab}"


def exists(name: str) -> bool:
    return name in netns.listnetns()


def create(name: str, sysctls: dict[str, str]) -> None:
    netns.create(name)
    set_sysctls(name, {**COMMON_SYSCTLS, **sysctls})


def remove(name: str) -> bool:
    """Delete a namespace; False if it was already gone."""
    try:
        netns.remove(name)
    except FileNotFoundError:
        return False
    return True


def set_sysctls(ns: str, values: dict[str, str]) -> None:
    if not values:
        return
    argv = ["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
            *(f"{k}={v}" for k, v in values.items())]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise LabError(f"setting sysctls in {ns} failed", got=done.stderr.strip())


def forwarder_iface_sysctls(ifaces: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for iface in ifaces:
        out[f"net.ipv4.conf.{iface}.rp_filter"] = "0"
        out[f"net.ipv4.conf.{iface}.send_redirects"] = "0"
        out[f"net.ipv4.conf.{iface}.promote_secondaries"] = "1"
    return out


def add_bridge(sw: str, bridge: str, lab: str) -> None:
    with NetNS(sw, flags=0) as ipr:
        ipr.link("add", ifname=bridge, kind="bridge", br_stp_state=0,
                 br_mcast_snooping=0, br_ageing_time=BRIDGE_AGEING_CS)
        index = ipr.link_lookup(ifname=bridge)[0]
        ipr.link("set", index=index, ifalias=tag(lab), state="up")


def attach(lab: str, sw: str, bridge: str, sw_iface: str, node_ns: str, node_iface: str) -> None:
    """A veth pair: ``sw_iface`` on ``bridge`` in the switch, ``node_iface`` in the node."""
    with NetNS(sw, flags=0) as ipr:
        ipr.link("add", ifname=sw_iface, kind="veth",
                 peer={"ifname": node_iface, "net_ns_fd": node_ns})
        index = ipr.link_lookup(ifname=sw_iface)[0]
        master = ipr.link_lookup(ifname=bridge)[0]
        ipr.link("set", index=index, master=master, ifalias=tag(lab), state="up")
    with NetNS(node_ns, flags=0) as ipr:
        index = ipr.link_lookup(ifname=node_iface)[0]
        ipr.link("set", index=index, ifalias=tag(lab))


def configure(node_ns: str, legs: Iterable[Leg], routes: Iterable[Route]) -> None:
    """Loopback up, each leg's addresses and link up, then the routes."""
    with NetNS(node_ns, flags=0) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        for leg in legs:
            index = ipr.link_lookup(ifname=leg.iface)[0]
            for addr in leg.addresses:
                _add_address(ipr, index, addr)
            ipr.link("set", index=index, state="up")
        for route in routes:
            ipr.route("add", dst=str(route.dst), gateway=str(route.via))


def _add_address(ipr: Any, index: int, addr: IPv4Interface) -> None:
    ipr.addr("add", index=index, address=str(addr.ip), prefixlen=addr.network.prefixlen,
             broadcast=str(addr.network.broadcast_address))


def lab_namespaces(lab: str, other_labs: Iterable[str] = ()) -> list[str]:
    """Namespaces named ``natlab-<lab>-*`` that belong to ``lab``.

    ``natlab-a-b-c`` could be lab ``a``'s node ``b-c`` or lab ``a-b``'s node ``c``;
    a namespace matching a longer known lab's prefix, or whose interfaces are
    tagged for another lab, is left alone.
    """
    prefix = ns_name(lab, "")
    longer = [ns_name(o, "") for o in other_labs if o != lab and ns_name(o, "").startswith(prefix)]
    out = []
    for name in netns.listnetns():
        if not name.startswith(prefix) or any(name.startswith(p) for p in longer):
            continue
        tags = namespace_tags(name)
        if tags and tag(lab) not in tags:
            continue
        out.append(name)
    return sorted(out)


def namespace_tags(name: str) -> set[str]:
    """The ``natlab:`` aliases on a namespace's interfaces (empty if none or gone)."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with NetNS(name, flags=0) as ipr:
            aliases = {link.get_attr("IFLA_IFALIAS") for link in ipr.get_links()}
    except (FileNotFoundError, NetlinkError):
        return set()
    return {a for a in aliases if a and a.startswith(ALIAS_PREFIX)}


def all_tagged_labs() -> set[str]:
    """Lab names guessed from the namespaces present (via tags on their interfaces)."""
    labs = set()
    for name in netns.listnetns():
        if name.startswith(PREFIX):
            labs.update(t.removeprefix(ALIAS_PREFIX) for t in namespace_tags(name))
    return labs


def untagged_switches() -> list[str]:
    """``natlab-*-sw`` namespaces: a switch namespace names its lab even before tagging."""
    return [n.removeprefix(PREFIX).removesuffix("-sw") for n in netns.listnetns()
            if n.startswith(PREFIX) and n.endswith("-sw")]


def pids_in(name: str) -> list[int]:
    """PIDs of processes living in a namespace (``ip netns pids``)."""
    done = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    if done.returncode != 0:
        return []  # namespace already gone
    return [int(p) for p in done.stdout.split()]


def links(name: Optional[str] = None) -> list[str]:
    """Interface names in a namespace (None: the caller's own namespace)."""
    if name is None:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
    with NetNS(name, flags=0) as ipr:
        return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
