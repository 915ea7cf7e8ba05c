"""Built-in probes: small programs that run inside lab hosts.

``python -m natlab.hostprogs.probe listen|send|udp-reflect|udp-send|udp-punch ...``
prints one JSON object per line (what it received and from whom) and exits 0
on success, 1 on timeout, so a caller in another namespace can read what the
NATs did. Endpoints are ``"ADDR:PORT"`` strings.

``listen``/``send`` are the scenario probes (UDP, TCP, ICMP echo and GRE): the
listener reports the source it saw for the first probe carrying its token and,
asked to, answers it; the sender reports the port it used and any answer, or
``refused`` for an ICMP destination unreachable (UDP, GRE) or a RST (TCP). With
``--keep-open`` (TCP) neither closes: after its report each says ``held`` and
waits, connection open, until it is stopped.

The UDP tools observe a NAT the way a STUN client does::

    udp-reflect --port P | --bind ADDR:PORT ...  [--count N] [--timeout S] [--no-reply]
        {"event": "listening", "port", "endpoints"}
        {"event": "recv", "source", "at", "data"}   answered with "seen SOURCE"
    udp-send --to ADDR:PORT ... [--sport P] [--saddr A] [--no-wait] [--hold S]
        {"event": "reply", "to", "source", "data", "seen"} | {"event": "timeout", "to"}
        | {"event": "sent", "to", "sport"}  (--no-wait)
        then with --hold: {"event": "recv", "source", "data"} ... {"event": "done"}
    udp-punch --sport P --peer ADDR:PORT
        {"event": "punched", "source", "sent"} | {"event": "timeout", "peer", "sent"}

A reflector on several endpoints and a sender asking them in turn from one
socket show the NAT's mapping behaviour (same ``seen`` or not); a sender
holding its socket open while others knock on its external endpoint shows the
filtering, hairpinning and timers.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time

IP_RECVERR = 11  # <linux/in.h>; Python does not export it
IPPROTO_GRE = 47
GRE_HEADER = b"\x00\x00\x08\x00"
"""A GRE header (RFC 2784): no checksum, key or sequence; protocol type IPv4."""
KEEP_OPEN_MAX = 3600.0
"""A ``--keep-open`` probe gives up its connection after this long, stopped or not."""


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _name(endpoint: tuple[str, int]) -> str:
    return f"{endpoint[0]}:{endpoint[1]}"


def _say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def _bound(kind: int, sport: int, addr: str = "0.0.0.0") -> socket.socket:
    # SO_REUSEADDR lets a sender share a reflector's endpoint: a datagram "from
    # the reflector's port" is how tests knock on a NAT from a known source.
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, sport))
    return sock


def _receive(sock: socket.socket, timeout: float) -> dict[str, str] | None:
    """The next datagram on ``sock`` as event fields (source, data), or None after ``timeout``."""
    sock.settimeout(timeout)
    try:
        data, source = sock.recvfrom(4096)
    except socket.timeout:
        return None
    return {"source": _name(source), "data": data.decode(errors="replace")}


def udp_reflect(binds: list[tuple[str, int]], count: int = 1, timeout: float = 5.0,
                answer: bool = True) -> int:
    """Answer each datagram with ``seen ADDR:PORT``, the source it came from (a STUN-like reflector).

    One socket per endpoint in ``binds``; each answers from the endpoint the
    datagram arrived on, so a client can compare what several servers saw.
    Stops after ``count`` datagrams (0: no limit) and gives up after ``timeout``
    seconds without one (0: no limit). With ``answer`` false it only reports:
    a silent listener, to see what a NAT lets in.
    """
    socks = [_bound(socket.SOCK_DGRAM, port, addr) for addr, port in binds]
    endpoints = [_name(sock.getsockname()) for sock in socks]
    _say(event="listening", port=socks[0].getsockname()[1], endpoints=endpoints)
    received = 0
    while count == 0 or received < count:
        ready, _, _ = select.select(socks, [], [], timeout or None)
        if not ready:
            _say(event="timeout")
            return 1
        sock = ready[0]  # the others stay readable for the next round
        data, source = sock.recvfrom(4096)
        received += 1
        _say(event="recv", source=_name(source), at=_name(sock.getsockname()),
             data=data.decode(errors="replace"))
        if answer:
            sock.sendto(f"seen {_name(source)}".encode(), source)
    return 0


def udp_send(to: list[str], sport: int = 0, message: str = "hello", timeout: float = 2.0, *,
             saddr: str = "0.0.0.0", wait: bool = True, hold: float = 0.0) -> int:
    """From one socket, send ``message`` to each of ``to`` in turn and wait for one reply each.

    One socket means one source endpoint: asking several reflectors from it
    shows whether the NAT's mapping depends on the destination. A reply from a
    reflector carries ``seen``, the external endpoint it saw. With ``wait``
    false it only sends. ``hold`` then keeps the socket, and so its NAT
    mapping, open that many seconds and reports every datagram that arrives:
    what the NAT's filtering lets in. Returns 1 if any destination did not answer.
    """
    sock = _bound(socket.SOCK_DGRAM, sport, saddr)
    unanswered = 0
    for dest in to:
        sock.sendto(message.encode(), _endpoint(dest))
        if not wait:
            _say(event="sent", to=dest, sport=sock.getsockname()[1])
            continue
        reply = _receive(sock, timeout)
        if reply is None:
            unanswered += 1
            _say(event="timeout", to=dest)
            continue
        if reply["data"].startswith("seen "):
            reply["seen"] = reply["data"].split()[1]
        _say(event="reply", to=dest, **reply)
    if hold > 0:
        deadline = time.monotonic() + hold
        while (left := deadline - time.monotonic()) > 0 and (got := _receive(sock, left)):
            _say(event="recv", **got)
        _say(event="done")
    return 1 if unanswered else 0


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


def _hold(*keep: socket.socket) -> None:
    """Keep the sockets (a connection) open until the caller stops this program."""
    _say(event="held")
    time.sleep(KEEP_OPEN_MAX)
    for sock in keep:
        sock.close()


def _ip_payload(packet: bytes) -> tuple[str, bytes]:
    """(source, payload) of an IPv4 packet as a raw socket gives it."""
    ihl = (packet[0] & 0x0F) * 4
    return socket.inet_ntoa(packet[12:16]), packet[ihl:]


def listen(proto: str, port: int, token: str, timeout: float, reply: bool, keep_open: bool = False) -> int:
    """Wait for one probe carrying ``token``; report its source; answer it if asked."""
    deadline = time.monotonic() + timeout
    if proto == "icmp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    elif proto == "gre":  # a raw socket for the protocol: the kernel sends no protocol unreachable
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
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
                if not keep_open:
                    conn.close()
                _say(event="recv", source=f"{addr}:{sport}", data=data.decode(errors="replace"))
                if keep_open:
                    sock.close()  # the port may be listened on again; the connection stays
                    _hold(conn)
                return 0
            data, (addr, sport) = sock.recvfrom(4096)
        except (socket.timeout, ConnectionError):
            break
        if proto == "gre":
            addr, payload = _ip_payload(data)
            if token.encode() not in payload:
                continue
            if reply:
                sock.sendto(GRE_HEADER + f"seen {addr} {token}".encode(), (addr, 0))
            _say(event="recv", source=addr)
            return 0
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


def send(proto: str, to: str, sport: int, token: str, timeout: float, reply: bool,
         keep_open: bool = False) -> int:
    """Send one probe carrying ``token``; with ``reply``, wait for the answer."""
    addr, port = _endpoint(to) if proto not in ("icmp", "gre") else (to, 0)
    try:
        if proto == "icmp":
            return _send_icmp(addr, sport, token, timeout, reply)
        if proto == "gre":
            return _send_gre(addr, token, timeout, reply)
        if proto == "tcp":
            return _send_tcp(addr, port, sport, token, timeout, reply, keep_open)
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


def _send_tcp(addr: str, port: int, sport: int, token: str, timeout: float, reply: bool,
              keep_open: bool = False) -> int:
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
    if keep_open:
        _hold(sock)
        return 0
    if reply:
        _read_to_end(sock)
    sock.close()
    return 0


def _read_to_end(sock: socket.socket) -> None:
    """Wait for the listener, which closes once it has answered, to close first: its end
    keeps TIME_WAIT, so this source port may connect to it again at once."""
    try:
        while sock.recv(2048):
            pass
    except OSError:  # socket.timeout, a reset: the answer came; how the peer ends is its business
        pass


def _send_gre(addr: str, token: str, timeout: float, reply: bool) -> int:
    """One GRE packet; with ``reply``, wait for a GRE answer or an ICMP error about it."""
    errors = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
    sock.sendto(GRE_HEADER + token.encode(), (addr, 0))
    _say(event="sent", sport=0)
    if not reply:
        return 0
    deadline = time.monotonic() + timeout
    refused_by = None
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock, errors], [], [], left)
        for got in ready:
            source, payload = _ip_payload(got.recv(4096))
            if got is sock and payload.startswith(GRE_HEADER + b"seen ") and token.encode() in payload:
                _say(event="reply", source=source)
                return 0
            if got is errors and payload[:1] == b"\x03" and token.encode() in payload:
                # A kernel with a GRE handler may send this even to a listener: wait a moment
                # for the listener's answer before calling it a refusal.
                refused_by = refused_by or source
                deadline = min(deadline, time.monotonic() + 0.3)
    if refused_by is not None:
        _say(event="refused", source=refused_by)
        return 1
    raise socket.timeout


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m natlab.hostprogs.probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("udp-reflect", help="answer datagrams with the source seen")
    r.add_argument("--port", type=int, action="append", default=[], help="listen on *:PORT (repeatable)")
    r.add_argument("--bind", action="append", default=[], metavar="ADDR:PORT", help="listen here (repeatable)")
    r.add_argument("--count", type=int, default=1, help="stop after this many datagrams (0: no limit)")
    r.add_argument("--timeout", type=float, default=5.0, help="give up after this long idle (0: no limit)")
    r.add_argument("--no-reply", action="store_true", help="report datagrams, answer none")
    s = sub.add_parser("udp-send", help="ask one or more endpoints from one socket")
    s.add_argument("--to", action="append", required=True, metavar="ADDR:PORT", help="repeatable; asked in turn")
    s.add_argument("--sport", type=int, default=0)
    s.add_argument("--saddr", default="0.0.0.0", help="source address to bind")
    s.add_argument("--message", default="hello")
    s.add_argument("--timeout", type=float, default=2.0, help="wait this long for each reply")
    s.add_argument("--no-wait", action="store_true", help="only send; expect no replies")
    s.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                   help="then keep the socket open and report what arrives")
    p = sub.add_parser("udp-punch", help="hole punching towards a peer")
    p.add_argument("--sport", type=int, required=True)
    p.add_argument("--peer", required=True)
    p.add_argument("--timeout", type=float, default=3.0)
    for name in ("listen", "send"):
        c = sub.add_parser(name, help=f"scenario probe: {name} (UDP, TCP, ICMP echo, GRE)")
        c.add_argument("--proto", choices=("udp", "tcp", "icmp", "gre"), default="udp")
        c.add_argument("--token", default="natlab-probe")
        c.add_argument("--timeout", type=float, default=1.0)
        c.add_argument("--reply", action="store_true")
        c.add_argument("--keep-open", action="store_true",
                       help="TCP: do not close; say 'held' and wait until stopped")
    sub.choices["listen"].add_argument("--port", type=int, default=0)
    sub.choices["send"].add_argument("--to", required=True, help="ADDR:PORT (ICMP, GRE: ADDR)")
    sub.choices["send"].add_argument("--sport", type=int, default=0, help="source port (ICMP: echo id)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cmd == "listen":
        return listen(args.proto, args.port, args.token, args.timeout, args.reply, args.keep_open)
    if args.cmd == "send":
        return send(args.proto, args.to, args.sport, args.token, args.timeout, args.reply, args.keep_open)
    if args.cmd == "udp-reflect":
        binds = [("0.0.0.0", port) for port in args.port] + [_endpoint(b) for b in args.bind]
        if not binds:
            parser.error("udp-reflect: give at least one --port or --bind")
        return udp_reflect(binds, args.count, args.timeout, answer=not args.no_reply)
    if args.cmd == "udp-send":
        return udp_send(args.to, args.sport, args.message, args.timeout, saddr=args.saddr,
                        wait=not args.no_wait, hold=args.hold)
    return udp_punch(args.sport, args.peer, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
