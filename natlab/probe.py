"""Built-in probes: small programs that run inside lab hosts.

``python -m natlab.probe listen|send|udp-reflect|udp-send|udp-punch ...``
prints one JSON object per line (what it received and from whom) and exits 0
on success, 1 on timeout, so a caller in another namespace can read what the
NATs did.

``listen``/``send`` are the scenario probes (UDP, TCP and ICMP echo): the
listener reports the source it saw for the first probe carrying its token and,
asked to, answers it; the sender reports the port it used and any answer.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

IP_RECVERR = 11  # <linux/in.h>; Python does not export it


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


def _bound(kind: int, sport: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", sport))
    return sock


def _echo(ident: int, seq: int, payload: bytes, type_: int = 8) -> bytes:
    from natlab.packet.checksum import checksum

    head = struct.pack("!BBHHH", type_, 0, 0, ident, seq)
    csum = checksum(head + payload)
    return struct.pack("!BBHHH", type_, 0, csum, ident, seq) + payload


def _icmp_of(packet: bytes) -> tuple[str, int, int, bytes]:
    """(source, type, identifier, payload) of an IPv4 packet carrying ICMP."""
    ihl = (packet[0] & 0x0F) * 4
    type_, _code, _csum, ident, _seq = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
    return socket.inet_ntoa(packet[12:16]), type_, ident, packet[ihl + 8:]


def listen(proto: str, port: int, token: str, timeout: float, reply: bool) -> int:
    """Wait for one probe carrying ``token``; report its source; answer it if asked."""
    deadline = time.monotonic() + timeout
    if proto == "icmp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    elif proto == "tcp":
        sock = _bound(socket.SOCK_STREAM, port)
        sock.listen(8)
    else:
        sock = _bound(socket.SOCK_DGRAM, port)
    _say(event="listening", proto=proto, port=port)
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if proto == "tcp":
                conn, (addr, sport) = sock.accept()
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                data = conn.recv(2048)
                if reply:
                    conn.sendall(f"seen {addr}:{sport}".encode())
                conn.close()
                _say(event="recv", source=f"{addr}:{sport}", data=data.decode(errors="replace"))
                return 0
            data, (addr, sport) = sock.recvfrom(4096)
        except (socket.timeout, ConnectionError):
            break
        if proto == "icmp":
            addr, type_, ident, payload = _icmp_of(data)
            if type_ != 8 or token.encode() not in payload:
                continue  # the kernel answers echo requests itself
            _say(event="recv", source=addr, ident=ident)
            return 0
        if token.encode() not in data:
            continue
        if reply:
            sock.sendto(f"seen {addr}:{sport} {token}".encode(), (addr, sport))
        _say(event="recv", source=f"{addr}:{sport}", data=data.decode(errors="replace"))
        return 0
    _say(event="timeout")
    return 1


def send(proto: str, to: str, sport: int, token: str, timeout: float, reply: bool) -> int:
    """Send one probe carrying ``token``; with ``reply``, wait for the answer."""
    addr, port = _endpoint(to) if proto != "icmp" else (to, 0)
    try:
        if proto == "icmp":
            return _send_icmp(addr, sport, token, timeout, reply)
        if proto == "tcp":
            return _send_tcp(addr, port, sport, token, timeout, reply)
        sock = _bound(socket.SOCK_DGRAM, sport)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)  # ICMP errors, unconnected
        sock.sendto(token.encode(), (addr, port))
        _say(event="sent", sport=sock.getsockname()[1])
        if not reply:
            return 0
        sock.settimeout(timeout)
        while True:
            data, (raddr, rport) = sock.recvfrom(4096)
            if token.encode() in data:
                _say(event="reply", source=f"{raddr}:{rport}", data=data.decode(errors="replace"))
                return 0
    except socket.timeout:
        _say(event="timeout")
    except ConnectionRefusedError:
        _say(event="refused")  # an ICMP port unreachable (UDP) or a RST (TCP)
    except OSError as err:
        _say(event="error", error=str(err))
    return 1


def _send_tcp(addr: str, port: int, sport: int, token: str, timeout: float, reply: bool) -> int:
    sock = _bound(socket.SOCK_STREAM, sport)
    sock.settimeout(timeout)
    sock.connect((addr, port))
    local = sock.getsockname()[1]
    sock.sendall(token.encode())
    _say(event="connected", sport=local)
    if reply:
        data = sock.recv(2048)
        if not data:
            _say(event="closed")
            return 1
        _say(event="reply", source=f"{addr}:{port}", data=data.decode(errors="replace"))
    sock.close()
    return 0


def _send_icmp(addr: str, ident: int, token: str, timeout: float, reply: bool) -> int:
    ident = ident or (os.getpid() & 0xFFFF)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.sendto(_echo(ident, 1, token.encode()), (addr, 0))
    _say(event="sent", sport=ident)
    if not reply:
        return 0
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        src, type_, got_ident, payload = _icmp_of(sock.recvfrom(4096)[0])
        if type_ == 0 and got_ident == ident and token.encode() in payload:
            _say(event="reply", source=src)
            return 0
        if type_ in (3, 11) and token.encode() in payload:
            _say(event="icmp-error", source=src, type=type_)
            return 1
    raise socket.timeout


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
    for name in ("listen", "send"):
        c = sub.add_parser(name)
        c.add_argument("--proto", choices=("udp", "tcp", "icmp"), default="udp")
        c.add_argument("--token", default="natlab-probe")
        c.add_argument("--timeout", type=float, default=1.0)
        c.add_argument("--reply", action="store_true")
    sub.choices["listen"].add_argument("--port", type=int, default=0)
    sub.choices["send"].add_argument("--to", required=True, help="ADDR:PORT (ICMP: ADDR)")
    sub.choices["send"].add_argument("--sport", type=int, default=0, help="source port (ICMP: echo id)")
    args = parser.parse_args(argv)
    if args.cmd == "listen":
        return listen(args.proto, args.port, args.token, args.timeout, args.reply)
    if args.cmd == "send":
        return send(args.proto, args.to, args.sport, args.token, args.timeout, args.reply)
    if args.cmd == "udp-reflect":
        return udp_reflect(args.port, args.count, args.timeout)
    if args.cmd == "udp-send":
        return udp_send(args.to, args.sport, args.message, args.timeout)
    return udp_punch(args.sport, args.peer, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
