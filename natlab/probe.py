"""Built-in probes: small UDP programs that run inside lab hosts.

``python -m natlab.probe udp-reflect|udp-send|udp-punch ...`` prints one JSON
object per line (what it received and from whom) and exits 0 on success, 1 on
timeout, so a caller in another namespace can read what the NATs did.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def udp_reflect(port: int, count: int, timeout: float) -> int:
    """Answer each datagram with the source endpoint it came from (a STUN-like reflector)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(timeout)
    _say(event="listening", port=port)
    for _ in range(count):
        try:
            data, (addr, sport) = sock.recvfrom(2048)
        except socket.timeout:
            _say(event="timeout")
            return 1
        seen = f"{addr}:{sport}"
        _say(event="recv", source=seen, data=data.decode(errors="replace"))
        sock.sendto(f"seen {seen}".encode(), (addr, sport))
    return 0


def udp_send(to: str, sport: int, message: str, timeout: float) -> int:
    """Send one datagram from ``sport`` and wait for one reply."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", sport))
    sock.settimeout(timeout)
    sock.sendto(message.encode(), _endpoint(to))
    try:
        data, (addr, port) = sock.recvfrom(2048)
    except socket.timeout:
        _say(event="timeout", to=to)
        return 1
    _say(event="reply", source=f"{addr}:{port}", data=data.decode(errors="replace"))
    return 0


def udp_punch(sport: int, peer: str, timeout: float, interval: float = 0.2) -> int:
    """Hole punching: send to ``peer`` every ``interval`` until a datagram from it arrives."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", sport))
    sock.settimeout(interval)
    target = _endpoint(peer)
    deadline = time.monotonic() + timeout
    sent = 0
    while time.monotonic() < deadline:
        sock.sendto(b"punch", target)
        sent += 1
        try:
            data, (addr, port) = sock.recvfrom(2048)
        except socket.timeout:
            continue
        sock.sendto(b"punch", target)  # let the peer hear us too
        _say(event="punched", source=f"{addr}:{port}", sent=sent)
        return 0
    _say(event="timeout", peer=peer, sent=sent)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m natlab.probe", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("udp-reflect")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--count", type=int, default=1)
    r.add_argument("--timeout", type=float, default=5.0)
    s = sub.add_parser("udp-send")
    s.add_argument("--to", required=True)
    s.add_argument("--sport", type=int, default=0)
    s.add_argument("--message", default="hello")
    s.add_argument("--timeout", type=float, default=2.0)
    p = sub.add_parser("udp-punch")
    p.add_argument("--sport", type=int, required=True)
    p.add_argument("--peer", required=True)
    p.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.cmd == "udp-reflect":
        return udp_reflect(args.port, args.count, args.timeout)
    if args.cmd == "udp-send":
        return udp_send(args.to, args.sport, args.message, args.timeout)
    return udp_punch(args.sport, args.peer, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
