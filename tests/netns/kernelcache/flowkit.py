"""Steady flows for the session-cache tests, run inside a lab namespace as ``python flowkit.py MODE ...``.

``udp-client TO SPORT COUNT INTERVAL``: from one socket bound to SPORT, send COUNT datagrams,
one per INTERVAL seconds, to a ``udp-reflect`` probe; prints ``{"sent", "replies", "seen"}``
(``seen``: the distinct sources the reflector reported, i.e. the external endpoints used;
``last_sent``: CLOCK_MONOTONIC, shared by every namespace, of the last datagram sent).

``udp-raw TO SPORT COUNT INTERVAL [zero]``: COUNT datagrams from SPORT through a raw socket, with a
full checksum (or 0: no checksum), so they leave with the checksum as built, never offloaded.
``udp-catch PORT SECONDS``: a UDP socket on PORT and a raw socket beside it, until SECONDS pass
quiet after the first datagram (which it waits :data:`FIRST_WAIT` for); prints ``{"received", "raw", "zero", "bad"}`` (datagrams the socket took; copies seen raw,
with checksum 0, with a wrong checksum).

``tcp-server PORT``: accept connections; answer each line with ``seen ADDR:PORT`` of the peer.
``tcp-client TO SPORT COUNT INTERVAL [SIZE]``: one connection from SPORT; COUNT lines (SIZE bytes
each) one per INTERVAL; prints ``{"sent", "replies", "seen", "error"}``.

Every wait is bounded; nothing here listens outside the namespace it runs in.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time


FIRST_WAIT = 15.0
"""Seconds a catcher waits for its first datagram (the sender's interpreter may start slowly)."""


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def udp_client(to: str, sport: int, count: int, interval: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", sport))
    sock.settimeout(0.5)
    dest = _endpoint(to)
    replies, seen, last_sent = 0, [], 0.0
    start = time.monotonic()
    for i in range(count):
        target = start + i * interval
        while (wait := target - time.monotonic()) > 0:
            time.sleep(min(wait, 0.05))
        sock.sendto(b"flow %d" % i, dest)
        last_sent = time.monotonic()
        try:
            data, _src = sock.recvfrom(4096)
        except socket.timeout:
            continue
        replies += 1
        source = data.decode(errors="replace").removeprefix("seen ")
        if source not in seen:
            seen.append(source)
    return {"sent": count, "replies": replies, "seen": seen, "last_sent": last_sent}


def udp_raw(to: str, sport: int, count: int, interval: float, zero: bool) -> dict:
    from natlab.packet import build

    dest = _endpoint(to)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect(dest)  # no packet: asks the route for our source address
    src = probe.getsockname()[0]
    probe.close()
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    start = time.monotonic()
    for i in range(count):
        packet = bytearray(build.udp(src, sport, dest[0], dest[1], b"raw %d" % i))
        if zero:
            packet[26:28] = b"\0\0"
        while (wait := start + i * interval - time.monotonic()) > 0:
            time.sleep(min(wait, 0.05))
        raw.sendto(bytes(packet), (dest[0], 0))
    return {"sent": count, "source": src, "start": start}


def udp_catch(port: int, quiet: float) -> dict:
    from natlab.packet.verify import problems

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    raw.setblocking(False)
    out = {"received": 0, "raw": 0, "zero": 0, "bad": 0}
    print(json.dumps({"event": "listening"}), flush=True)
    last = time.monotonic() + FIRST_WAIT - quiet  # the first datagram may take a while to come
    while time.monotonic() - last < quiet:
        ready, _, _ = select.select([sock, raw], [], [], 0.1)
        for s in ready:
            data = s.recv(65535)
            last = time.monotonic()
            if s is sock:
                out["received"] += 1
                continue
            ihl = (data[0] & 15) * 4
            if int.from_bytes(data[ihl + 2:ihl + 4], "big") != port:
                continue
            out["raw"] += 1
            out["zero"] += data[ihl + 6:ihl + 8] == b"\0\0"
            out["bad"] += bool(problems(data))
    return out


def tcp_server(port: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(16)
    print(json.dumps({"event": "listening", "port": port}), flush=True)

    def serve(conn: socket.socket, peer: tuple[str, int]) -> None:
        conn.settimeout(120)
        with conn, conn.makefile("rb") as lines:
            for _line in lines:
                conn.sendall(f"seen {peer[0]}:{peer[1]}\n".encode())

    while True:
        conn, peer = listener.accept()
        threading.Thread(target=serve, args=(conn, peer), daemon=True).start()


def tcp_client(to: str, sport: int, count: int, interval: float, size: int = 64) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", sport))
    sock.settimeout(3.0)
    replies, seen, error, last_sent = 0, [], None, 0.0
    try:
        sock.connect(_endpoint(to))
        lines = sock.makefile("rb")
        start = time.monotonic()
        for i in range(count):
            target = start + i * interval
            while (wait := target - time.monotonic()) > 0:
                time.sleep(min(wait, 0.05))
            sock.sendall(b"x" * max(0, size - 1) + b"\n")
            last_sent = time.monotonic()
            line = lines.readline()
            if not line:
                error = "closed"
                break
            replies += 1
            source = line.decode().strip().removeprefix("seen ")
            if source not in seen:
                seen.append(source)
    except OSError as err:
        error = f"{type(err).__name__}: {err}"
    finally:
        sock.close()
    return {"sent": count, "replies": replies, "seen": seen, "error": error, "last_sent": last_sent}


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "udp-client":
        print(json.dumps(udp_client(args[0], int(args[1]), int(args[2]), float(args[3]))))
    elif mode == "tcp-client":
        print(json.dumps(tcp_client(args[0], int(args[1]), int(args[2]), float(args[3]),
                                    *(int(a) for a in args[4:5]))))
    elif mode == "udp-raw":
        print(json.dumps(udp_raw(args[0], int(args[1]), int(args[2]), float(args[3]), args[4:5] == ["zero"])))
    elif mode == "udp-catch":
        print(json.dumps(udp_catch(int(args[0]), float(args[1]))))
    elif mode == "tcp-server":
        tcp_server(int(args[0]))
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
