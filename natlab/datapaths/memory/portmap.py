"""The port mapping server of an in-memory NAT: its inside address, as a host of its realm.

The in-memory network hands this endpoint every UDP or TCP packet addressed to
the gateway's inside address, and every datagram to the SSDP group
(239.255.255.250:1900) sent in the NAT's realm. It is a minimal host stack
(:class:`~natlab.realisers.memory.stack.HostStack`) on that address: UDP 5351
and 1900 are bound and TCP 5000 listens only while the policy serves them
(else the stack answers port unreachable / RST, as a kernel with no such
socket would). Datagrams go to :meth:`PortmapShell.on_udp
<natlab.gateway.portmap_shell.PortmapShell.on_udp>`; a TCP connection's bytes
are framed by :class:`~natlab.portmap.http.RequestReader` and answered by
``on_http``, then closed. What the shell sends to 224.0.0.1 reaches every host
of the realm. Delays follow the manual clock: an M-SEARCH is answered
after a random delay within its MX (UPnP Device Architecture 1.1 section
1.3.3), drawn from the shell's seeded generator, and announcements repeat per
``ANNOUNCE_DELAYS``; :meth:`flush_due` sends what is due, and the network calls
it after each control request and each ``advance``. A client waiting for SSDP
answers moves the clock on (the driver's ``MemNetTransport``), never sleeps.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from natlab.engine.types import Endpoint, to_int
from natlab.gateway.portmap_shell import PORTMAP_PORT, SSDP_PORT, PortmapShell
from natlab.packet import build
from natlab.packet.headers import PROTO_TCP, PROTO_UDP, IPv4Header, PacketError, UDPHeader
from natlab.portmap import http, ssdp, upnp_desc, upnp_soap
from natlab.portmap.types import HttpReply, PortMappingPolicy
from natlab.realisers.memory.stack import HostStack

SSDP_GROUP = to_int(ssdp.MULTICAST_GROUP)
_MULTICAST = (0xE0 << 24, 0xF0 << 24)


class MemoryPortmap:
    """``shell``'s sockets in memory; ``send_inside`` routes a packet into the NAT's realm,
    ``realm_stacks`` lists the stacks of the realm's hosts (for multicast)."""

    def __init__(self, shell: PortmapShell, send_inside: Callable[[bytes], Any],
                 realm_stacks: Callable[[], list[HostStack]]) -> None:
        self.shell = shell
        self.address = shell.inside.addr
        self.stack = HostStack(f"{shell.gateway.spec.name}-inside", (self.address,))
        self.send_inside = send_inside
        self.realm_stacks = realm_stacks
        self._readers: dict[tuple[int, int, int, int], http.RequestReader] = {}
        shell.listeners.append(self._sockets)
        self._sockets(shell.policy)

    def _sockets(self, policy: PortMappingPolicy) -> None:
        """Bind/listen what the policy serves, as the netns datapath opens sockets."""
        for port, on, proto in ((PORTMAP_PORT, policy.natpmp or policy.pcp, "udp"),
                                (SSDP_PORT, policy.upnp, "udp"), (upnp_desc.HTTP_PORT, policy.upnp, "tcp")):
            if on:
                (self.stack.bind_udp if proto == "udp" else self.stack.listen_tcp)(port)
            else:
                self.stack.close_port(proto, port)

    def wants(self, data: bytes) -> bool:
        """Whether a packet in the realm is this endpoint's: UDP/TCP to the inside address, or SSDP."""
        if len(data) < 20 or data[9] not in (PROTO_UDP, PROTO_TCP):
            return False
        dst = int.from_bytes(data[16:20], "big")
        return dst == self.address or (dst == SSDP_GROUP and data[9] == PROTO_UDP)

    def receive(self, data: bytes) -> list[bytes]:
        """Take one packet; the packets the gateway answers with (to route in the realm)."""
        try:
            ip, offset = IPv4Header.parse(data)
            if ip.proto == PROTO_UDP:
                udp, _ = UDPHeader.parse(bytes(data[offset:ip.total_length]))
                if ip.dst == SSDP_GROUP:
                    if udp.dport != SSDP_PORT or SSDP_PORT not in self.stack.udp_bound:
                        return []  # nobody on the gateway joined the group
                    return self._datagram(ip.src, udp.sport, SSDP_PORT, data, offset, ip.total_length)
                if udp.dport in self.stack.udp_bound:
                    return self._datagram(ip.src, udp.sport, udp.dport, data, offset, ip.total_length)
            answers = self.stack.receive(data)
        except PacketError:
            self.shell.count("memory.dropped.malformed")
            return []
        return answers + self._serve_http()

    def from_outside(self, data: bytes) -> list[bytes]:
        """A packet the engine let through to the gateway's own external endpoint (the upstream
        PCP server's answer); the client answers it completed, to route inside."""
        try:
            ip, offset = IPv4Header.parse(data)
            udp, _ = UDPHeader.parse(bytes(data[offset:ip.total_length]))
        except PacketError:
            self.shell.count("memory.dropped.malformed")
            return []
        own = self.shell.upstream_endpoint
        if ip.proto != PROTO_UDP or own is None or udp.dport != own.port:
            self.shell.count("memory.dropped.not-for-the-gateway")
            return []
        payload = bytes(data[offset + 8:ip.total_length])
        return self._packets(self.shell.on_upstream(payload, Endpoint(ip.src, udp.sport)))

    def flush_due(self) -> None:
        """Send what the shell has due (announcements, delayed SSDP answers)."""
        for packet in self._packets(self.shell.due()):
            self.send_inside(packet)

    # -- helpers -----------------------------------------------------------------
    def _datagram(self, src: int, sport: int, port: int, data: bytes, offset: int, end: int) -> list[bytes]:
        payload = bytes(data[offset + 8:end])
        return self._packets(self.shell.on_udp(port, payload, Endpoint(src, sport)))

    def _packets(self, sends: list) -> list[bytes]:
        out = []
        for send in sends:
            packet = build.udp(self.address, send.from_port, send.to.addr, send.to.port, send.data)
            if (send.to.addr & _MULTICAST[1]) == _MULTICAST[0]:
                for stack in self.realm_stacks():
                    stack.inbox.append(packet)  # multicast: every host of the realm hears it
            else:
                out.append(packet)
        return out

    def _now(self, reply: Any) -> HttpReply:
        """The answer at once: in memory an upstream PCP server answers inside the call, so a
        deferred answer still waiting means none is there."""
        if isinstance(reply, HttpReply):
            return reply
        got: list[HttpReply] = []
        reply.then(got.append)
        if got:
            return got[0]
        self.shell.count("iwf.upnp-no-upstream-answer")
        return HttpReply(500, upnp_soap.fault(501))

    def _serve_http(self) -> list[bytes]:
        out: list[bytes] = []
        for key, conn in list(self.stack.conns.items()):
            if conn.lport != upnp_desc.HTTP_PORT or conn.state != "established":
                continue
            reader = self._readers.setdefault(key, http.RequestReader())
            result = reader.feed(bytes(conn.received))
            conn.received.clear()
            if result is None:
                continue
            if isinstance(result, http.Refused):
                self.shell.count(f"upnp.http.refused.{result.reason}")
                answer = http.refusal(result.status)
            else:
                answer = http.frame(self._now(self.shell.on_http(result, Endpoint(conn.remote, conn.rport))))
            out.append(self.stack.send_data(conn, answer))
            fin: Optional[bytes] = self.stack.close(conn)
            if fin is not None:
                out.append(fin)
            del self._readers[key]
        return out
