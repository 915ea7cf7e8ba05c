"""The sender of ``natlab bench nat``'s new-mappings figure: one datagram per source port.

Run inside the inside host (``python -m natlab.bench.lab_tools mappings-blast HOST PORT SECONDS``):
a raw socket sends prebuilt UDP datagrams from source ports 1024, 1025, ... in turn (each a
new mapping at the NAT in front), paced at :data:`MAPPINGS_OFFERED` per second, for ``seconds``
or one pass over the port space, whichever ends first. The receiver (``udp-sink``) counts what
arrives: every datagram received is one mapping the gateway created.
"""

from __future__ import annotations

import socket
import time

MAPPINGS_OFFERED = 50_000
"""Datagrams per second offered: more than a Python engine decides, so the gateway is the limit."""
FIRST_SPORT = 1024
LAST_SPORT = 65535


def mappings_blast(host: str, port: int, seconds: float) -> dict:
    """One datagram from each source port in turn (a new mapping each at a NAT), through a raw
    socket, paced at :data:`MAPPINGS_OFFERED` per second, for ``seconds`` or one pass over the ports."""
    from natlab.packet import build

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((host, port))  # no packet: only asks the route for our source address
    src = probe.getsockname()[0]
    probe.close()
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    total = min(LAST_SPORT - FIRST_SPORT + 1, int(MAPPINGS_OFFERED * seconds))
    packets = [build.udp(src, FIRST_SPORT + i, host, port, b"m" * 18) for i in range(total)]
    sent, start, chunk = 0, time.monotonic(), 500
    for first in range(0, total, chunk):
        ahead = start + first / MAPPINGS_OFFERED - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        for packet in packets[first:first + chunk]:
            try:
                raw.sendto(packet, (host, 0))
                sent += 1
            except OSError:  # ENOBUFS
                pass
    return {"count": sent, "seconds": time.monotonic() - start}
