"""Minimal host stacks for :mod:`natlab.realisers.memory.network`: what a Linux kernel answers by itself.

Theory of operation
-------------------
A netns lab's hosts run a real kernel, which answers some packets with no
program involved. The in-memory twin mirrors exactly those answers, so the
same probe sees the same thing on both backends:

- a UDP datagram to a port nobody is bound to: ICMP port unreachable (RFC 1122
  3.2.2.1), quoting the datagram, from the address it was sent to;
- an ICMP echo request: an echo reply (RFC 1122 3.2.2.6);
- any other protocol (GRE, ...) nobody has a raw socket open for: ICMP protocol
  unreachable (RFC 1122 3.2.2.1), as a kernel without a handler for it does;
- a TCP SYN to a listening port: SYN-ACK; the client's ACK completes the
  handshake and the connection is *accepted*; to a closed port: RST (RFC 793
  3.4), as to any segment that belongs to no connection;
- a SYN-ACK to a connecting socket: the ACK; a RST there: the connect is
  *refused*; a FIN: ACK it and close too (FIN|ACK), as a program that reads
  to the end and closes would.

:meth:`HostStack.receive` takes one packet addressed to the host and returns
the packets the host sends in answer; :class:`natlab.realisers.memory.network.MemNet` routes
them. Every packet the host gets is also kept in ``inbox`` (what a raw socket
or a listening program would see). With ``answers=False`` the host is a sink
that keeps everything and answers nothing (the original MemNet behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from natlab.packet import build
from natlab.packet.headers import (
    PROTO_ICMP, PROTO_TCP, PROTO_UDP, ICMPHeader, IPv4Header, PacketError, TCPFlags, TCPHeader,
    UDPHeader, to_str,
)

__all__ = ["HostStack", "TcpConn"]

_SYN, _ACK, _RST, _FIN, _PSH = TCPFlags.SYN, TCPFlags.ACK, TCPFlags.RST, TCPFlags.FIN, TCPFlags.PSH
_FINISHED = ("closed", "refused", "reset")


@dataclass
class TcpConn:
    """One end of a TCP connection, as far as the probes need it."""

    local: int
    lport: int
    remote: int
    rport: int
    state: str
    """"syn-sent", "syn-received", "established", "fin-wait", "last-ack", "closed", "refused", "reset"."""
    snd_nxt: int
    rcv_nxt: int = 0
    received: bytearray = field(default_factory=bytearray)

    @property
    def remote_label(self) -> str:
        return f"{to_str(self.remote)}:{self.rport}"

    def segment(self, flags: TCPFlags, payload: bytes = b"") -> bytes:
        """The next segment this end sends; SYN and FIN take a sequence number each."""
        data = build.tcp(self.local, self.lport, self.remote, self.rport, flags=flags,
                         seq=self.snd_nxt, ack=self.rcv_nxt if flags & _ACK else 0, payload=payload)
        self.snd_nxt = (self.snd_nxt + len(payload) + bool(flags & _SYN) + bool(flags & _FIN)) & 0xFFFFFFFF
        return data


class HostStack:
    """The kernel-side behaviour of one host: bound ports, TCP connections, answers."""

    def __init__(self, name: str, addresses: tuple[int, ...], *, answers: bool = True) -> None:
        self.name = name
        self.addresses = addresses
        self.answers = answers
        self.udp_bound: set[int] = set()
        self.tcp_listening: set[int] = set()
        self.raw_open: set[int] = set()
        """IP protocols (other than UDP, TCP, ICMP) a raw socket is open for: no error for them."""
        self.conns: dict[tuple[int, int, int, int], TcpConn] = {}
        """By (local address, local port, remote address, remote port)."""
        self.accepted: list[TcpConn] = []
        """Connections a listening port completed, oldest first."""
        self.inbox: list[bytes] = []
        self._isn = 1000

    # -- sockets ---------------------------------------------------------------
    def bind_udp(self, port: int) -> None:
        self.udp_bound.add(port)

    def listen_tcp(self, port: int) -> None:
        self.tcp_listening.add(port)

    def close_port(self, proto: str, port: int) -> None:
        """Unbind a UDP port or stop listening on a TCP port (connections stay)."""
        (self.udp_bound if proto == "udp" else self.tcp_listening).discard(port)

    def connect(self, src: int, sport: int, dst: int, dport: int) -> tuple[TcpConn, bytes]:
        """Open a connection: the new :class:`TcpConn` and the SYN to send."""
        conn = TcpConn(src, sport, dst, dport, "syn-sent", self._next_isn())
        self.conns[(src, sport, dst, dport)] = conn
        return conn, conn.segment(_SYN)

    def send_data(self, conn: TcpConn, payload: bytes) -> bytes:
        return conn.segment(_PSH | _ACK, payload)

    def close(self, conn: TcpConn) -> Optional[bytes]:
        """Start closing ``conn``: the FIN to send, or None if it is not open. A socket
        closed before its handshake completed (a SYN nobody answered) is gone at once and
        sends nothing, as in a kernel: a later SYN to its port finds no half-open connection."""
        if conn.state != "established":
            self.conns.pop((conn.local, conn.lport, conn.remote, conn.rport), None)
            return None
        conn.state = "fin-wait"
        return conn.segment(_FIN | _ACK)

    def _next_isn(self) -> int:
        self._isn += 64_000
        return self._isn & 0xFFFFFFFF

    # -- packets in --------------------------------------------------------------
    def receive(self, data: bytes) -> list[bytes]:
        """Take one packet addressed to this host; the packets it sends in answer."""
        self.inbox.append(bytes(data))
        if not self.answers:
            return []
        try:
            ip, offset = IPv4Header.parse(data)
            if ip.is_fragment:
                return []  # a kernel would reassemble; the twin's probes never fragment
            body = bytes(data[offset:ip.total_length])
            if ip.proto == PROTO_UDP:
                return self._udp(data, body)
            if ip.proto == PROTO_ICMP:
                return self._icmp(ip, body)
            if ip.proto == PROTO_TCP:
                return self._tcp(data, ip, body)
            if ip.proto not in self.raw_open:
                return [build.icmp_error(data, src=ip.dst, type=3, code=2)]
        except PacketError:
            pass  # a kernel drops what it cannot parse
        return []

    def _udp(self, data: bytes, body: bytes) -> list[bytes]:
        udp, _ = UDPHeader.parse(body)
        if udp.dport in self.udp_bound:
            return []
        return [build.icmp_error(data, src=int.from_bytes(data[16:20], "big"), type=3, code=3)]

    def _icmp(self, ip: IPv4Header, body: bytes) -> list[bytes]:
        icmp, _ = ICMPHeader.parse(body)
        if icmp.type != 8:
            return []
        return [build.icmp_echo(ip.dst, ip.src, icmp.ident, icmp.seq, reply=True, payload=body[8:])]

    def _tcp(self, data: bytes, ip: IPv4Header, body: bytes) -> list[bytes]:
        seg, off = TCPHeader.parse(body)
        payload = body[off:]
        conn = self.conns.get((ip.dst, seg.dport, ip.src, seg.sport))
        if conn is None:
            if seg.flags & _RST:
                return []
            if seg.flags & _SYN and not seg.flags & _ACK and seg.dport in self.tcp_listening:
                conn = TcpConn(ip.dst, seg.dport, ip.src, seg.sport, "syn-received", self._next_isn(),
                               rcv_nxt=(seg.seq + 1) & 0xFFFFFFFF)
                self.conns[(ip.dst, seg.dport, ip.src, seg.sport)] = conn
                return [conn.segment(_SYN | _ACK)]
            return [build.tcp_rst_for(data)]
        out = self._on_conn(conn, seg, payload)
        if conn.state in _FINISHED:  # the 4-tuple is free again (no TIME-WAIT in the twin)
            del self.conns[(ip.dst, seg.dport, ip.src, seg.sport)]
        return out

    def _on_conn(self, conn: TcpConn, seg: TCPHeader, payload: bytes) -> list[bytes]:
        if seg.flags & _RST:
            conn.state = "refused" if conn.state == "syn-sent" else "reset"
            return []
        out: list[bytes] = []
        if conn.state == "syn-sent":
            if seg.flags & _SYN and seg.flags & _ACK:
                conn.rcv_nxt = (seg.seq + 1) & 0xFFFFFFFF
                conn.state = "established"
                out.append(conn.segment(_ACK))
            return out
        if conn.state == "syn-received" and seg.flags & _ACK:
            conn.state = "established"
            self.accepted.append(conn)
        if payload:
            conn.received += payload
            conn.rcv_nxt = (conn.rcv_nxt + len(payload)) & 0xFFFFFFFF
        if seg.flags & _FIN:
            conn.rcv_nxt = (conn.rcv_nxt + 1) & 0xFFFFFFFF
            if conn.state == "established":  # the other end closed first: close too
                out.append(conn.segment(_FIN | _ACK))
                conn.state = "last-ack"
            else:
                out.append(conn.segment(_ACK))
                conn.state = "closed"
        elif payload:
            out.append(conn.segment(_ACK))
        elif conn.state == "last-ack" and seg.flags & _ACK:
            conn.state = "closed"
        return out
