"""natlab's port mapping client as a program in a lab host (netns, docker): real sockets.

::

    python -m natlab.realisers.netns.portmap_client '{"protocol": "upnp", "internal_port": 5000,
                                                       "lifetime": 3600}'

It runs one :class:`~natlab.portmap.client.PortMapRequest` (JSON, its fields) with
the protocol logic of :mod:`natlab.portmap.client` over :class:`SocketTransport`
and prints the :class:`~natlab.portmap.client.PortMapAnswer` as one JSON line.
Without ``gateway`` it asks the host's default gateway. Exit status 0 granted,
1 refused or no answer, 2 a bad request.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sys
import time
from ipaddress import IPv4Address, ip_address
from typing import Optional, Sequence

from natlab.portmap.client import PortMapRequest, request

class SocketTransport:
    """Real sockets, from ``client`` (the host's address)."""

    def __init__(self, client: str) -> None:
        self.client = client

    def udp(self, server: str, port: int, payload: bytes, timeout: float,
            retransmit: Sequence[float] = ()) -> list[tuple[str, bytes]]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.client, 0))
            if IPv4Address(server).is_multicast:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.client))
            start, sent, got = time.monotonic(), 0, []
            offsets = tuple(retransmit) or (0.0,)
            while True:
                elapsed = time.monotonic() - start
                if sent < len(offsets) and elapsed >= offsets[sent]:
                    sock.sendto(payload, (server, port))
                    sent += 1
                    continue
                nxt = offsets[sent] if sent < len(offsets) else timeout
                wait = min(nxt, timeout) - elapsed
                if wait <= 0:
                    if got or elapsed >= timeout:
                        return got
                    continue
                sock.settimeout(wait)
                try:
                    data, (source, _) = sock.recvfrom(4096)
                except (socket.timeout, ConnectionRefusedError):
                    continue
                got.append((source, data))
                if not IPv4Address(server).is_multicast:
                    return got

    def http(self, server: str, port: int, request: bytes, timeout: float) -> bytes:
        try:
            with socket.create_connection((server, port), timeout=timeout, source_address=(self.client, 0)) as sock:
                sock.sendall(request)
                chunks = []
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return b"".join(chunks)
                    chunks.append(chunk)
        except OSError:
            return b""


def default_gateway(route_table: str = "/proc/net/route") -> str:
    """The IPv4 default gateway of this host (its namespace's routing table)."""
    with open(route_table) as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 2 and fields[1] == "00000000":
                return str(IPv4Address(int(fields[2], 16).to_bytes(4, "little")))
    raise ValueError("this host has no IPv4 default route: give the gateway's address")


def _client_address(gateway: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((gateway, 9))
        return sock.getsockname()[0]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        req = PortMapRequest.from_dict(json.loads(args[0]) if args else {})
        if not req.gateway:
            req = dataclasses.replace(req, gateway=default_gateway())
        ip_address(req.gateway)
    except (ValueError, TypeError, IndexError) as err:
        print(json.dumps({"ok": False, "result": "BAD_REQUEST", "detail": str(err)}))
        return 2
    client = _client_address(req.gateway)
    answer = request(req, SocketTransport(client), client)
    print(json.dumps(answer.to_dict(), sort_keys=True))
    return 0 if answer.ok else 1


if __name__ == "__main__":
    sys.exit(main())
