"""Sending packets the gateway originates: one raw IPv4 socket with IP_HDRINCL.

The engine hands back whole IPv4 packets (hairpinned packets, RSTs, ICMP
errors, released fragments). The kernel routes each by its destination; the
socket's ``SO_MARK`` lets the gateway's own rules skip them.
"""

from __future__ import annotations

import socket

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
        self._sock.sendto(packet, (destination, 0))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
