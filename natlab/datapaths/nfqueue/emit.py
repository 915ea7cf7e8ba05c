"""Sending packets the gateway originates: one raw IPv4 socket with IP_HDRINCL.

The engine hands back whole IPv4 packets (hairpinned packets, RSTs, ICMP
errors, released fragments). The kernel routes each by its destination; the
socket's ``SO_MARK`` lets the gateway's own rules skip them. A TCP
super-packet longer than the route's MTU (a hairpinned GSO packet) is cut into
segments first (:mod:`~natlab.datapaths.nfqueue.segment`).
"""

from __future__ import annotations

import errno
import socket

from natlab.datapaths.nfqueue.segment import tcp_segments

SO_MARK = getattr(socket, "SO_MARK", 36)


class RawSender:
    """``send(packet)``: hand one IPv4 packet (header included) to the kernel."""

    def __init__(self, mark: int) -> None:
        self.mark = mark
        self._sock: socket.socket | None = None

    def open(self) -> "RawSender":
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.mark)
        sock.setblocking(False)
        self._sock = sock
        return self

    def send(self, packet: bytes | bytearray) -> None:
        """Send ``packet``; raises OSError (EMSGSIZE, ENETUNREACH, ...) for the caller to count."""
        if self._sock is None:
            raise RuntimeError("RawSender.send() before open()")
        if len(packet) < 20:
            raise OSError("packet shorter than an IPv4 header")
        destination = socket.inet_ntoa(bytes(packet[16:20]))
        try:
            self._sock.sendto(packet, (destination, 0))
        except OSError as err:
            segments = tcp_segments(packet, _mtu(destination)) if err.errno == errno.EMSGSIZE else None
            if segments is None:
                raise
            for segment in segments:
                self._sock.sendto(segment, (destination, 0))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


IP_MTU = 14


def _mtu(destination: str) -> int:
    """The MTU of the route to ``destination`` (a connected UDP socket asks the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((destination, 9))
        return probe.getsockopt(socket.IPPROTO_IP, IP_MTU)
