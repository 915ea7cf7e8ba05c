"""The slow path: every frame the C fast path did not take, handled as a router with a NAT.

Theory of operation
-------------------
The order of the checks is the kernel's, so the engine sees what it sees on
NFQUEUE (:mod:`natlab.datapaths.nfqueue.rules`):

- ARP (RFC 826): requests for our addresses are answered (the inside port's
  own, the outside port's own plus the pool and static 1:1 externals);
  every ARP from a neighbour on our subnet is learned, and what waited for
  it goes out.
- From the outside, every IPv4 packet goes to the engine first (NFQUEUE's
  PREROUTING queue); what it forwards is routed (TTL, MTU) and sent.
- From the inside: to one of our own non-pool addresses, answered locally
  (echo, RFC 1122 3.2.2.6); to the pool or a static external, the engine
  (hairpin; PREROUTING); otherwise routed first, and when the route leaves
  by the outside port, checked (TTL, DF over the MTU) before the engine,
  as Linux checks before its FORWARD hook.
- TTL <= 1: ICMP time exceeded (RFC 1812 5.3.1, so traceroute works); DF and
  over the egress MTU: frag-needed with the next-hop MTU (RFC 1191); over the
  MTU without DF: fragmented (RFC 791); no route: net unreachable.

Packets the gateway emits (the engine's ICMP errors and RSTs, hairpinned
packets, our own ICMP) go out by the same route lookup (:meth:`send_ip`). A
next hop without a MAC is asked for (ARP) while the packet waits.

Every frame dropped here is counted by reason (:attr:`Router.drops`).
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Optional, Sequence

from natlab.datapaths.dpdk import frames
from natlab.datapaths.dpdk.routes import Iface, Neighbours, RouteTable
from natlab.engine.types import Side
from natlab.engine.verdicts import Forward, Hairpin

log = logging.getLogger("natlab.gateway")

TCP_CONTROL = 0x07  # FIN, SYN, RST


class Router:
    def __init__(self, gateway: Any, dataplane: Any, ifaces: Sequence[Iface], routes: RouteTable,
                 cache: Any, clock: Any) -> None:
        self.gateway = gateway
        self.dp = dataplane
        self.ifaces = list(ifaces)
        self.routes = routes
        self.cache = cache
        self.clock = clock
        self.neighbours = Neighbours()
        self.drops: collections.Counter[str] = collections.Counter()
        self.sent = collections.Counter()
        self.own = {a for iface in self.ifaces for a, _ in iface.addresses}
        """Addresses configured on the gateway's interfaces (the kernel's, copied)."""
        self.local: Any = None
        """The kernel's servers behind a TUN (:class:`~.local.LocalDelivery`), if any."""

    def reconfigure(self, ifaces: Sequence[Iface], routes: RouteTable) -> bool:
        """The namespace's interfaces and routes as read again (an MTU or address changed):
        True if anything differs (the fast path's cached MTUs and headers are then dropped)."""
        if list(ifaces) == self.ifaces and routes.routes == self.routes.routes:
            return False
        self.ifaces = list(ifaces)
        self.routes = routes
        self.own = {a for iface in self.ifaces for a, _ in iface.addresses}
        self.gateway.invalidate_fast()
        return True

    # --- addresses -------------------------------------------------------------------

    def externals(self) -> set[int]:
        """Pool and static 1:1 external addresses (they change with set-pool and set)."""
        import ipaddress

        addresses = set(self.gateway.pool) | set(getattr(self.gateway.engine, "external_addresses", ()))
        return {int(ipaddress.IPv4Address(a)) for a in addresses}

    def answers_arp(self, iface: Iface, address: int) -> bool:
        if any(a == address for a, _ in iface.addresses):
            return True
        return not iface.inside and address in self.externals()

    def _on_link(self, iface: Iface, address: int) -> bool:
        for a, prefix in iface.addresses:
            shift = 32 - prefix
            if prefix == 0 or address >> shift == a >> shift:
                return True
        return False

    def _source_for(self, iface: Iface) -> int:
        if iface.addresses:
            return iface.addresses[0][0]
        externals = sorted(self.externals())
        return externals[0] if externals else 0

    # --- frames in -------------------------------------------------------------------

    def handle(self, port: int, frame: bytes, reason: str) -> None:
        iface = self.ifaces[port]
        if len(frame) < frames.ETH_HEADER:
            self.drops["runt"] += 1
            return
        dst_mac = frame[:6]
        if dst_mac != iface.mac and dst_mac != frames.BROADCAST:
            if dst_mac[0] & 1 and iface.inside and self.local is not None \
                    and frames.ethertype(frame) == frames.ETH_IPV4 and self._multicast(frame):
                return
            self.drops["not-for-us" if not dst_mac[0] & 1 else "multicast"] += 1
            return
        kind = frames.ethertype(frame)
        if kind == frames.ETH_ARP:
            self._arp(iface, frame)
        elif kind == frames.ETH_IPV4 and dst_mac == iface.mac:
            self._ipv4(iface, frame)
        else:
            self.drops["not-ipv4"] += 1

    def _arp(self, iface: Iface, frame: bytes) -> None:
        arp = frames.parse_arp(frame)
        if arp is None:
            self.drops["bad-arp"] += 1
            return
        if self._on_link(iface, arp.sender_ip) and arp.sender_mac[0] & 1 == 0:
            changed, waiting = self.neighbours.learn(iface.port, arp.sender_ip, arp.sender_mac)
            if changed:
                self.gateway.invalidate_fast()  # cached Ethernet headers name the old MAC
            for packet in waiting:
                if packet:  # b"": a request made at start, nothing waited
                    self._transmit(iface, arp.sender_mac, packet)
        if arp.op == 1 and self.answers_arp(iface, arp.target_ip):
            self.dp.send(iface.port, frames.arp_frame(2, iface.mac, arp.target_ip, arp.sender_mac, arp.sender_ip))
            self.sent["arp-replies"] += 1

    def _multicast(self, frame: bytes) -> bool:
        """A multicast IPv4 frame on an inside port: to the kernel if its servers want it
        (SSDP M-SEARCH); never routed."""
        raw = frame[frames.ETH_HEADER:]
        if frames.ipv4_problem(raw) is not None:
            return False
        return self.local.take(raw[:(raw[2] << 8) | raw[3]], from_inside=True)

    def _ipv4(self, iface: Iface, frame: bytes) -> None:
        raw = frame[frames.ETH_HEADER:]
        why = frames.ipv4_problem(raw)
        if why is not None:
            self.drops[why] += 1
            return
        total = (raw[2] << 8) | raw[3]
        packet = raw[:total]
        if iface.inside:
            self._from_inside(iface, packet)
        else:
            self._from_outside(iface, packet)

    def _from_outside(self, iface: Iface, packet: bytes) -> None:
        verdict = self.gateway.process(packet, Side.OUTSIDE)
        self._forget_session(Side.OUTSIDE, packet, verdict)
        if type(verdict) is Forward:
            if self.local is not None and self.local.take(bytes(verdict.data), from_inside=False):
                return  # the upstream PCP server's answer to the gateway's own client
            self._forward(iface, packet, verdict.data, Side.OUTSIDE, checked=False)
        elif type(verdict) is Hairpin:
            self.gateway.send_hairpin(verdict.data)
        # None (truncated, engine error) and Drop: the gateway counted and recorded it

    def _from_inside(self, iface: Iface, packet: bytes) -> None:
        dst = frames.dst_of(packet)
        if dst in self.own and dst not in self.externals():
            self._local(iface, packet)
            return
        if dst in self.externals():
            verdict = self.gateway.process(packet, Side.INSIDE)
            self._forget_session(Side.INSIDE, packet, verdict)
            if type(verdict) is Hairpin:
                self.gateway.send_hairpin(verdict.data)
            elif type(verdict) is Forward:
                self._forward(iface, packet, verdict.data, Side.INSIDE, checked=False)
            return
        hop = self.routes.lookup(dst)
        if hop is None:
            self._icmp_error(iface, packet, 3, 0)
            self.drops["no-route"] += 1
            return
        out = self.ifaces[hop.port]
        if out.inside:  # inside to inside: routed, not translated (no NFQUEUE rule matches)
            self._forward(iface, packet, packet, Side.INSIDE, checked=False, engine=False)
            return
        if not self._may_leave(iface, packet, out):
            return
        verdict = self.gateway.process(packet, Side.INSIDE)
        self._forget_session(Side.INSIDE, packet, verdict)
        if type(verdict) is Forward:
            self._forward(iface, packet, verdict.data, Side.INSIDE, checked=True)
        elif type(verdict) is Hairpin:
            self.gateway.send_hairpin(verdict.data)

    def _forget_session(self, side: Side, packet: bytes, verdict) -> None:
        """A packet met the engine that may have changed what its session does: a TCP SYN,
        FIN or RST, or a packet whose external endpoint is not the one the session's C entries
        repeat (a forward's session reached through a static address, a remap). Then the C
        entries of that session go, both directions, before the engine's new entry is offered.
        (A miss on an entry's own path, expired or not installed yet, changes nothing.)"""
        if not self.cache.entries:
            return
        proto = packet[9]
        if proto not in (1, 6, 17):
            return
        ihl = (packet[0] & 15) * 4
        if len(packet) < ihl + 8:
            return
        if side is Side.INSIDE:
            inside, remote = packet, packet
            in_addr, rem_addr = frames.src_of(packet), frames.dst_of(packet)
        else:
            if type(verdict) is not Forward or len(verdict.data) < ihl + 8:
                return
            inside, remote = verdict.data, packet
            in_addr, rem_addr = frames.dst_of(inside), frames.src_of(remote)
        if proto == 1:
            ident = (inside[ihl + 4] << 8) | inside[ihl + 5]
            in_port, rem_port = ident, 0
        else:
            in_port = (inside[ihl] << 8 | inside[ihl + 1]) if side is Side.INSIDE else (inside[ihl + 2] << 8 | inside[ihl + 3])
            rem_port = (remote[ihl + 2] << 8 | remote[ihl + 3]) if side is Side.INSIDE else (remote[ihl] << 8 | remote[ihl + 1])
        session = (proto, in_addr, in_port, rem_addr, rem_port)
        keys = self.cache.sessions.get(session)
        if not keys:
            return
        if proto == 6 and len(packet) >= ihl + 14 and packet[ihl + 13] & TCP_CONTROL:
            self.cache.forget_session(session)
            return
        # The external endpoint this packet's session has now, by the engine's verdict
        # (outbound: the rewritten source; inbound: the address:port it was sent to) ...
        if side is Side.INSIDE:
            if type(verdict) is not Forward or len(verdict.data) < ihl + 8:
                self.cache.forget_session(session)
                return
            out = verdict.data
            ext = (frames.src_of(out), (out[ihl + 4] << 8 | out[ihl + 5]) if proto == 1 else (out[ihl] << 8 | out[ihl + 1]))
        else:
            at = ihl + 4 if proto == 1 else ihl + 2  # the ICMP identifier or the destination port
            ext = (frames.dst_of(packet), packet[at] << 8 | packet[at + 1])
        # ... and the one its cached entries repeat: when they differ, the entries go.
        for key in keys:
            entry = self.cache.entries.get(key)
            if entry is None:
                continue
            cached = (entry.new_src, entry.new_sport) if key[0] == 0 else (entry.dst, entry.dport)
            if cached != ext:
                self.cache.forget_session(session)
                return

    # --- forwarding ----------------------------------------------------------------------

    def _may_leave(self, iface: Iface, original: bytes, out: Iface) -> bool:
        """TTL and DF checks before a packet is forwarded; the ICMP error if not."""
        if original[8] <= 1:
            self._icmp_error(iface, original, 11, 0)
            self.drops["ttl-exceeded"] += 1
            return False
        if len(original) > out.mtu and frames.dont_fragment(original):
            self._icmp_error(iface, original, 3, 4, mtu=out.mtu)
            self.drops["frag-needed"] += 1
            return False
        return True

    def _forward(self, iface: Iface, original: bytes, packet: bytes | bytearray, side: Side,
                 checked: bool, engine: bool = True) -> None:
        """Route ``packet`` (the engine's output for ``original``), TTL - 1, and send it."""
        dst = frames.dst_of(packet)
        if dst in self.own and dst not in self.externals():
            self._local(iface, bytes(packet))
            return
        hop = self.routes.lookup(dst)
        if hop is None:
            self._icmp_error(iface, original, 3, 0)
            self.drops["no-route"] += 1
            return
        out = self.ifaces[hop.port]
        if not checked and not self._may_leave(iface, original, out):
            return
        routed = frames.ttl_decremented(packet)
        mac = self.neighbours.get(out.port, hop.address)
        if mac is None:
            self._resolve(out, hop.address, bytes(routed))
            return
        if len(routed) > out.mtu:
            self._send_fragments(out, mac, bytes(routed))
            return
        self._transmit(out, mac, routed)
        if engine:
            self.cache.offer(original, side, out.port, mac + out.mac, out.mtu)

    def _send_fragments(self, out: Iface, mac: bytes, packet: bytes) -> None:
        from natlab.packet.build import fragment

        try:
            pieces = fragment(packet, out.mtu)
        except ValueError:
            self.drops["cannot-fragment"] += 1
            return
        for piece in pieces:
            self._transmit(out, mac, piece)

    def _transmit(self, out: Iface, mac: bytes, packet: bytes | bytearray) -> None:
        if not self.dp.send(out.port, frames.eth_header(mac, out.mac, frames.ETH_IPV4) + bytes(packet)):
            self.drops["tx-no-buffer"] += 1

    def _resolve(self, out: Iface, address: int, packet: bytes) -> None:
        if self.neighbours.wait(out.port, address, packet, self.clock()):
            self._ask(out, address)

    def _ask(self, out: Iface, address: int) -> None:
        source = self._source_for(out)
        for a, prefix in out.addresses:  # the address on the neighbour's subnet
            if prefix == 0 or a >> (32 - prefix) == address >> (32 - prefix):
                source = a
                break
        self.dp.send(out.port, frames.arp_frame(1, out.mac, source, frames.BROADCAST, address))
        self.sent["arp-requests"] += 1

    def resolve_gateways(self) -> None:
        """Ask for every route's next hop at start, so the first packets do not wait."""
        for route in self.routes.routes:
            if route.via is not None and self.neighbours.get(route.port, route.via) is None:
                self.neighbours.wait(route.port, route.via, b"", self.clock())
                self._ask(self.ifaces[route.port], route.via)

    def on_timer(self) -> None:
        for port, address in self.neighbours.retries(self.clock()):
            self._ask(self.ifaces[port], address)

    # --- the gateway's own packets -----------------------------------------------------------

    def _local(self, iface: Iface, packet: bytes) -> None:
        if iface.inside and self.local is not None and self.local.take(packet, from_inside=True):
            return
        reply = frames.echo_reply(packet)
        if reply is None:
            self.drops["local-not-echo"] += 1
            return
        self.sent["echo-replies"] += 1
        self.send_ip(reply)

    def _icmp_error(self, iface: Iface, original: bytes, type_: int, code: int, mtu: int = 0) -> None:
        error = frames.icmp_error_for(original, self._source_for(iface), type_, code, mtu)
        if error is not None:
            self.sent[f"icmp-{type_}-{code}"] += 1
            self.send_ip(error)

    def send_ip(self, packet: bytes | bytearray) -> bool:
        """Send a packet the gateway originates (its ICMP, the engine's emits, hairpins)."""
        dst = frames.dst_of(packet)
        hop = self.routes.lookup(dst)
        if hop is None:
            self.drops["emit-no-route"] += 1
            return False
        out = self.ifaces[hop.port]
        mac = self.neighbours.get(out.port, hop.address)
        if mac is None:
            self._resolve(out, hop.address, bytes(packet))
            return True
        if len(packet) > out.mtu:
            self._send_fragments(out, mac, bytes(packet))
            return True
        self._transmit(out, mac, packet)
        return True

    def send_from_kernel(self, packet: bytes, inside: int) -> None:
        """What the namespace's kernel answered (:mod:`~.local` checked it): multicast out of
        the port holding the inside address ``inside``, with the group's MAC; unicast routed."""
        from natlab.datapaths.dpdk.local import is_multicast, multicast_mac

        dst = frames.dst_of(packet)
        if is_multicast(dst):
            out = next((i for i in self.ifaces if i.inside and any(a == inside for a, _ in i.addresses)), None)
            if out is None or len(packet) > out.mtu:
                self.drops["local-multicast-unsent"] += 1
                return
            self._transmit(out, multicast_mac(dst), packet)
            return
        self.send_ip(packet)

    def counters(self) -> dict[str, Any]:
        return {"drops": dict(self.drops), "sent": dict(self.sent),
                "neighbours": len(self.neighbours.macs), "arp_given_up": self.neighbours.dropped}


class RouterSender:
    """The gateway's ``sender``: packets it emits leave by the router (set once it exists)."""

    def __init__(self) -> None:
        self.router: Optional[Router] = None

    def send(self, packet: bytes | bytearray) -> Any:
        if self.router is None:
            raise OSError("the DPDK ports are not open yet")
        if not self.router.send_ip(packet):
            raise OSError("no route for an emitted packet")
        return None

