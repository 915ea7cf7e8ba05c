"""What a kernel lab sets up for a gateway on the DPDK datapath, before its process starts.

Called through the datapath's ``prepare(spec)`` hook, which the netns realiser
(``natlab/realisers/netns/build.py:prepare_datapath``) calls for each gateway
whose datapath is ``dpdk``, after its veths exist and before its process starts.
The peers are found by the veths' own peer index (``IFLA_LINK``) in the lab's
switch namespace, so nothing here depends on how the realiser names them:

- **offloads off on the peers** of the gateway's veths (the switch-side ends,
  which transmit into the gateway): a frame DPDK reads from a veth must carry
  its real checksum and be at most one MTU, so tx checksumming, TSO and GSO
  are off there (``ethtool -K``); GRO off on the gateway's own veths.
- **the kernel out of the path** in the gateway's namespace: ``ip_forward=0``
  and an nftables ``netdev`` ingress chain that drops everything on the
  gateway's interfaces. AF_PACKET (and AF_XDP in generic mode) sees frames
  before that hook, so DPDK still gets them, but the kernel no longer answers
  ARP, routes or delivers a second copy. It also keeps a stopped gateway
  closed: with no DPDK process nothing passes.

Everything here lives in the lab's namespaces and goes when they are deleted
(``natlab down``); nothing touches the host's own interfaces or firewall.
"""

from __future__ import annotations

import os
import subprocess
from typing import Sequence

from natlab.errors import LabError

TABLE = "natlab_dpdk"
OFFLOADS_OFF = ("tx", "off", "tso", "off", "gso", "off")


def _run(argv: list[str], stdin: str | None = None) -> None:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as err:
        raise LabError(f"{argv[3] if len(argv) > 3 else argv[0]} is not installed",
                       hint="apt-get install ethtool nftables (bash install.sh --dpdk)") from err
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed", got=done.stderr.strip())


def ingress_drop_script(ifaces: Sequence[str]) -> str:
    """An ``nft -f`` script: one netdev table, an ingress chain per interface, policy drop."""
    lines = [f"table netdev {TABLE} {{"]
    for iface in ifaces:
        lines += [f"  chain drop_{iface} {{",
                  f'    type filter hook ingress device "{iface}" priority 0; policy drop;',
                  "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def peers_of(gateway_ns: str, ifaces: Sequence[str], switch_ns: str) -> list[str]:
    """The names, in ``switch_ns``, of the other ends of the veths ``ifaces`` of ``gateway_ns``."""
    from pyroute2 import NetNS

    with NetNS(gateway_ns, flags=0) as ns:
        wanted = {}
        for iface in ifaces:
            found = ns.link_lookup(ifname=iface)
            if not found:
                raise LabError(f"no interface {iface} in {gateway_ns}")
            wanted[ns.get_links(found[0])[0].get_attr("IFLA_LINK")] = iface
    with NetNS(switch_ns, flags=0) as sw:
        by_index = {link["index"]: link.get_attr("IFLA_IFNAME") for link in sw.get_links()}
    missing = [iface for index, iface in wanted.items() if index not in by_index]
    if missing:
        raise LabError(f"the veth peers of {', '.join(missing)} are not in {switch_ns}")
    return [by_index[index] for index in wanted]


def prepare(spec) -> None:  # spec: GatewaySpec
    """Everything a kernel lab must do for ``spec``'s gateway before DPDK takes its veths."""
    from natlab.datapaths.dpdk.options import DpdkOptions
    from natlab.realisers.netns.namespaces import switch_ns

    DpdkOptions.from_spec(spec)  # a bad option is the lab's error, before the process starts
    ifaces = [*spec.inside_ifaces, spec.outside_iface]
    if (spec.extra.get("dpdk") or {}).get("ports"):
        return  # real NICs: nothing of the lab's to prepare
    sw = switch_ns(spec.lab)
    if not os.path.exists(f"/run/netns/{sw}"):  # veths straight between namespaces (no switch)
        siblings = _siblings(spec.netns)
        for iface in ifaces:
            ns = next((n for n in siblings if _peer_in(spec.netns, iface, n)), None)
            if ns is None:
                raise LabError(f"no veth peer of {iface} of {spec.netns} in", got=", ".join(siblings))
            for peer in peers_of(spec.netns, [iface], ns):
                _run(["ip", "netns", "exec", ns, "ethtool", "-K", peer, *OFFLOADS_OFF])
        prepare_gateway(spec.netns, ifaces, sw, [])
        return
    prepare_gateway(spec.netns, ifaces, sw, peers_of(spec.netns, ifaces, sw))


def _siblings(gateway_ns: str) -> list[str]:
    """The namespaces named like ``gateway_ns`` but for its last part (its lab's others)."""
    prefix = gateway_ns.rsplit("-", 1)[0] + "-"
    return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix) and n != gateway_ns)


def _peer_in(gateway_ns: str, iface: str, ns: str) -> bool:
    """Whether ``ns`` holds the veth whose peer is ``iface`` (indexes both ways: an index
    alone is not unique across namespaces)."""
    from pyroute2 import NetNS

    with NetNS(gateway_ns, flags=0) as gw:
        link = gw.get_links(gw.link_lookup(ifname=iface)[0])[0]
    with NetNS(ns, flags=0) as other:
        return any(l["index"] == link.get_attr("IFLA_LINK") and l.get_attr("IFLA_LINK") == link["index"]
                   for l in other.get_links())


def offloads_off(gateway_ns: str, gateway_ifaces: Sequence[str], switch_ns: str,
                 peers: Sequence[str]) -> None:
    """Offloads off on ``peers`` (in ``switch_ns``), GRO too on the gateway's own ends."""
    for peer in peers:
        _run(["ip", "netns", "exec", switch_ns, "ethtool", "-K", peer, *OFFLOADS_OFF])
    for iface in gateway_ifaces:
        _run(["ip", "netns", "exec", gateway_ns, "ethtool", "-K", iface, "gro", "off", *OFFLOADS_OFF])


def prepare_gateway(gateway_ns: str, gateway_ifaces: Sequence[str], switch_ns: str,
                    peers: Sequence[str]) -> None:
    """:func:`offloads_off`, then the kernel's forwarding off and an ingress drop on
    ``gateway_ifaces`` (in ``gateway_ns``)."""
    offloads_off(gateway_ns, gateway_ifaces, switch_ns, peers)
    _run(["ip", "netns", "exec", gateway_ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])
    # Replace an earlier table atomically (a restarted lab step): delete-if-there, then add.
    script = f"table netdev {TABLE}\ndelete table netdev {TABLE}\n" + ingress_drop_script(gateway_ifaces)
    _run(["ip", "netns", "exec", gateway_ns, "nft", "-f", "-"], stdin=script)


def undo(spec) -> None:  # spec: GatewaySpec
    """Give the namespace back to the kernel (benchmarks measure other paths there next):
    the ingress drop goes, offloads come back on. Forwarding stays as it is."""
    _run(["ip", "netns", "exec", spec.netns, "nft", "-f", "-"],
         stdin=f"table netdev {TABLE}\ndelete table netdev {TABLE}\n")
    offloads_on(spec)


def offloads_on(spec) -> None:  # spec: GatewaySpec
    """Offloads back on, on the peers of ``spec``'s veths and on the veths themselves."""
    from natlab.realisers.netns.namespaces import switch_ns

    ifaces = [*spec.inside_ifaces, spec.outside_iface]
    sw = switch_ns(spec.lab)
    on = tuple(v if v != "off" else "on" for v in OFFLOADS_OFF)
    for peer in peers_of(spec.netns, ifaces, sw):
        _run(["ip", "netns", "exec", sw, "ethtool", "-K", peer, *on])
    for iface in ifaces:
        _run(["ip", "netns", "exec", spec.netns, "ethtool", "-K", iface, *on])


def capture_point(spec) -> tuple[str, str]:  # spec: GatewaySpec
    """Where ``natlab capture`` sees a DPDK gateway's frames: (namespace, tcpdump filter).

    In the gateway's own namespace tcpdump sees nothing AF_XDP takes (XDP redirects
    a frame before the kernel's taps), so the capture runs on the peers of the
    gateway's veths in the lab's switch namespace, which carry every frame into and
    out of the gateway: the inside leg before translation, the outside leg after
    (``-i any`` with an ``ifindex`` filter, so one pcap names each packet's leg)."""
    from pyroute2 import NetNS

    from natlab.realisers.netns.namespaces import switch_ns

    sw = switch_ns(spec.lab)
    if not os.path.exists(f"/run/netns/{sw}"):
        raise LabError("no switch namespace to capture this dpdk gateway from", got=sw,
                       hint="natlab capture runs on the switch side of the gateway's veths")
    peers = peers_of(spec.netns, [*spec.inside_ifaces, spec.outside_iface], sw)
    with NetNS(sw, flags=0) as ns:
        indexes = [ns.link_lookup(ifname=peer)[0] for peer in peers]
    return sw, " or ".join(f"ifindex {i}" for i in indexes)

