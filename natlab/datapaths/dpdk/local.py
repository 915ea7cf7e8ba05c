"""Local delivery: the gateway's own servers (NAT-PMP, PCP, UPnP IGD) reached through a TUN.

Theory of operation
-------------------
With DPDK owning the veths the kernel of the gateway's namespace sees no frame
(:mod:`~.lab_setup` drops them at netdev ingress), yet the port mapping servers
are kernel sockets (:mod:`natlab.datapaths.nfqueue.portmap_sockets`, the same
code as on NFQUEUE). So the gateway opens a kernel TUN, :data:`LOCAL_IFACE`, in
its namespace and the router hands it exactly the packets those sockets serve
(:func:`to_kernel`), arriving on an inside port:

- UDP to the inside address, port 5351 (NAT-PMP, RFC 6886; PCP, RFC 6887), while
  either is on;
- UDP to 239.255.255.250:1900 (SSDP M-SEARCH, UPnP Device Architecture 1.1 1.3.2)
  and to the inside address:1900, and TCP to the inside address:5000 (the
  descriptions and SOAP), while UPnP is on;
- after the engine, from the outside: UDP to the gateway's own PCP client endpoint
  (``pcp_interworking``, :attr:`PortmapShell.upstream_endpoint
  <natlab.gateway.portmap_shell.PortmapShell.upstream_endpoint>`), which the engine
  admits from the upstream server only.

Nothing else reaches the kernel: pings to the gateway are the router's, and nothing
from the WAN side reaches a server port. The kernel's answers come back out of the
TUN (a policy rule sends everything the namespace originates into it: ``iif lo``,
after the local table) and leave by the router (:meth:`Router.send_from_kernel
<natlab.datapaths.dpdk.router.Router.send_from_kernel>`) when :func:`from_kernel`
allows them: from a served endpoint (or ICMP from the inside address), unicast by
the route and the ARP cache, multicast (NAT-PMP and SSDP announcements, which the
sockets send on the TUN) out of the inside port with the group's MAC (RFC 1112
6.4). The rest (IGMP reports, anything else the namespace sends) is dropped and
counted. A packet the kernel is handed never meets the engine or the C fast path:
the engine stays the authority only for what crosses the NAT, and what the servers
map there is an engine mapping the fast path learns like any other.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import selectors
import socket
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

from natlab.gateway.portmap_shell import PORTMAP_PORT, SSDP_PORT
from natlab.portmap import ssdp, upnp_desc

log = logging.getLogger("natlab.gateway")

LOCAL_IFACE = "nllocal0"
"""The TUN's name in the gateway's namespace (it goes when the gateway's process ends)."""
TABLE = 28268
"""The routing table that sends what the namespace originates into the TUN."""
RULE_PRIORITY = 50
"""After the local table (0), before main (32766)."""
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
READ_BURST = 64
SSDP_GROUP = int.from_bytes(socket.inet_aton(ssdp.MULTICAST_GROUP), "big")
HTTP_PORT = upnp_desc.HTTP_PORT
UDP, TCP, ICMP = 17, 6, 1


@dataclass(frozen=True)
class Served:
    """What the kernel's sockets serve now (the port mapping policy, as ports)."""

    inside: int
    """The inside address the servers bind to."""
    udp: frozenset[int]
    tcp: frozenset[int]
    upstream: Optional[tuple[int, int]] = None
    """The gateway's own PCP client endpoint (``pcp_interworking``), if it runs."""


def served(shell: Any) -> Served:
    """What ``shell``'s sockets serve under its current policy."""
    policy = shell.policy
    udp = ({PORTMAP_PORT} if policy.natpmp or policy.pcp else set()) | ({SSDP_PORT} if policy.upnp else set())
    up = shell.upstream_endpoint
    return Served(shell.inside.addr, frozenset(udp), frozenset({HTTP_PORT} if policy.upnp else ()),
                  (up.addr, up.port) if up is not None else None)


def _ports(packet: bytes) -> Optional[tuple[int, int, int]]:
    """(protocol, source port, destination port) of an unfragmented UDP/TCP packet, else None."""
    if len(packet) < 20 or (packet[6] & 0x3F) or packet[7]:
        return None  # a fragment: the servers' requests are never fragmented
    ihl = (packet[0] & 15) * 4
    if packet[9] not in (UDP, TCP) or len(packet) < ihl + 4:
        return None
    return packet[9], packet[ihl] << 8 | packet[ihl + 1], packet[ihl + 2] << 8 | packet[ihl + 3]


def to_kernel(packet: bytes, now: Served, from_inside: bool) -> Optional[str]:
    """Why ``packet`` (a valid IPv4 packet) goes to the kernel's servers, or None when it does not.

    ``from_inside``: it arrived on an inside port, as is (the servers' clients);
    otherwise it is the engine's output for a packet from the outside."""
    ports = _ports(packet)
    if ports is None:
        return None
    proto, _sport, dport = ports
    dst = int.from_bytes(packet[16:20], "big")
    if not from_inside:
        return "upstream" if proto == UDP and now.upstream == (dst, dport) else None
    if proto == UDP and dport in now.udp and (dst == now.inside or (dst == SSDP_GROUP and dport == SSDP_PORT)):
        return "ssdp" if dport == SSDP_PORT else "natpmp-pcp"
    if proto == TCP and dst == now.inside and dport in now.tcp:
        return "upnp-http"
    return None


def from_kernel(packet: bytes, now: Served) -> Optional[str]:
    """Why ``packet``, which the namespace's kernel sent into the TUN, may leave, or None.

    From the inside address: UDP from a served port (answers, announcements), TCP
    from the HTTP port, ICMP (errors about what it was handed); from the PCP client
    endpoint, to the upstream server."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    src = int.from_bytes(packet[12:16], "big")
    if src == now.inside and packet[9] == ICMP:
        return "icmp"
    ports = _ports(packet)
    if ports is None:
        return None
    proto, sport, _dport = ports
    if src == now.inside:
        if proto == UDP and sport in (PORTMAP_PORT, SSDP_PORT):
            return "udp"
        if proto == TCP and sport == HTTP_PORT:
            return "tcp"
        return None
    if proto == UDP and now.upstream == (src, sport):
        return "upstream"
    return None


def multicast_mac(group: int) -> bytes:
    """The Ethernet address of an IPv4 group (RFC 1112 6.4: 01-00-5E and its low 23 bits)."""
    return bytes([0x01, 0x00, 0x5E, (group >> 16) & 0x7F, (group >> 8) & 0xFF, group & 0xFF])


def is_multicast(address: int) -> bool:
    return address >> 28 == 14


class LocalDelivery:
    """The TUN, the port mapping sockets behind it, and the counters of what crossed it."""

    def __init__(self, gateway: Any, selector: selectors.BaseSelector) -> None:
        self.gateway = gateway
        self.selector = selector
        self.sockets: Any = None
        self.fd = -1
        self.counters: Counter[str] = Counter()
        self.router: Any = None

    def open(self, router: Any) -> None:
        """The TUN up in this namespace, the rule into it, then the servers' sockets on it."""
        from natlab.datapaths.nfqueue.portmap_sockets import open_portmap

        self.router = router
        inside_mtu = next((i.mtu for i in router.ifaces if i.inside), 1500)
        self.fd = open_tun(LOCAL_IFACE)
        configure(LOCAL_IFACE, inside_mtu)
        self.selector.register(self.fd, selectors.EVENT_READ, lambda _m: self.read())
        self.sockets = open_portmap(self.gateway, self.selector, local_iface=LOCAL_IFACE)
        self.gateway.stat_sources.append(lambda: {"dpdk_local": dict(self.counters)})
        router.local = self

    @property
    def shell(self) -> Any:
        return self.sockets.shell if self.sockets is not None else None

    def served(self) -> Optional[Served]:
        return served(self.shell) if self.shell is not None else None

    def take(self, packet: bytes, from_inside: bool) -> bool:
        """Hand ``packet`` to the kernel if its servers serve it (True), else leave it (False)."""
        now = self.served()
        why = to_kernel(packet, now, from_inside) if now is not None else None
        if why is None:
            return False
        try:
            os.write(self.fd, packet)
        except OSError as err:
            self.counters[f"to-kernel.dropped.{errno.errorcode.get(err.errno, err.errno)}"] += 1
            return True
        self.counters[f"to-kernel.{why}"] += 1
        return True

    def read(self) -> None:
        """What the kernel sent into the TUN (a burst at most): out by the router, or dropped."""
        now = self.served()
        for _ in range(READ_BURST):
            try:
                packet = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                self.counters["from-kernel.read-errors"] += 1
                log.warning("reading %s failed: %s", LOCAL_IFACE, err)
                return
            why = from_kernel(packet, now) if now is not None else None
            if why is None:
                self.counters["from-kernel.dropped"] += 1
                continue
            self.counters[f"from-kernel.{why}"] += 1
            self.router.send_from_kernel(packet, now.inside)

    def wait(self) -> Optional[float]:
        return self.sockets.wait() if self.sockets is not None else None

    def on_timer(self) -> None:
        if self.sockets is not None:
            self.sockets.on_timer()

    def close(self) -> None:
        if self.sockets is not None:
            self.sockets.close()
            self.sockets = None
        if self.fd >= 0:
            try:
                self.selector.unregister(self.fd)
            except (KeyError, ValueError):
                pass
            os.close(self.fd)
            self.fd = -1
        unroute()


def open_tun(name: str) -> int:
    """A non-blocking TUN (IP packets, no packet information header) named ``name``."""
    from natlab.errors import LabError

    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise LabError("cannot open /dev/net/tun for the gateway's local delivery", got=str(err),
                       hint="the gateway needs the tun module (modprobe tun) and CAP_NET_ADMIN") from err
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError as err:
        os.close(fd)
        raise LabError(f"cannot create the TUN {name}", got=str(err)) from err
    return fd


def _sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as err:  # IPv6 compiled out: nothing to turn off
        log.debug("%s: %s", path, err)


def configure(name: str, mtu: int) -> None:
    """``name`` up with the inside MTU, no IPv6 on it, no reverse-path filter (what it carries
    comes from inside clients, whose routes are on the inside veth), and everything the
    namespace originates routed into it (``ip rule iif lo lookup TABLE``)."""
    from pyroute2 import IPRoute

    _sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")
    _sysctl(f"/proc/sys/net/ipv4/conf/{name}/rp_filter", "0")
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=index, mtu=mtu, state="up")
        ipr.route("replace", dst="0.0.0.0/0", oif=index, table=TABLE)
        _delete_rule(ipr)
        ipr.rule("add", priority=RULE_PRIORITY, iifname="lo", table=TABLE)


def _delete_rule(ipr: Any) -> None:
    for rule in ipr.get_rules(family=socket.AF_INET):
        if rule.get_attr("FRA_PRIORITY") == RULE_PRIORITY and rule.get_attr("FRA_TABLE") == TABLE:
            ipr.rule("del", priority=RULE_PRIORITY, table=TABLE, iifname="lo")


def unroute() -> None:
    """The rule goes (the TUN and its route went with the file descriptor)."""
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            _delete_rule(ipr)
    except Exception:  # noqa: BLE001 - teardown goes on; the namespace's deletion removes it
        log.debug("removing the local delivery rule failed", exc_info=True)


def open_local(gateway: Any, selector: selectors.BaseSelector, router: Any) -> Optional[LocalDelivery]:
    """Local delivery for ``gateway`` if it can serve port mapping (a NAT engine with a policy)."""
    from natlab.gateway.portmap_shell import serves_port_mapping

    if not gateway.spec.inside_ifaces or not serves_port_mapping(gateway):
        return None
    local = LocalDelivery(gateway, selector)
    local.open(router)
    return local
