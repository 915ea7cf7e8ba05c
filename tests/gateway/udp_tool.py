"""A tiny UDP tool run inside test namespaces (``python udp_tool.py serve|send ...``).

serve PORT... [--no-reply] [--duration S]: print one JSON line per datagram
    received ({"port", "src", "sport", "data"}) and echo it back unless --no-reply.
send --bind PORT --to IP:PORT [--to ...] [--wait S]: send "hello <dest>" to each
    destination from one socket, then print {"replies": [[ip, port, data], ...]}.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time


def serve(ports: list[int], reply: bool, duration: float) -> None:
    socks = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        socks.append(sock)
    print(json.dumps({"ready": True}), flush=True)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        readable, _, _ = select.select(socks, [], [], 0.1)
        for sock in readable:
            data, (ip, port) = sock.recvfrom(65535)
            print(json.dumps({"port": sock.getsockname()[1], "src": ip, "sport": port,
                              "data": data.decode(errors="replace")}), flush=True)
            if reply:
                sock.sendto(b"echo " + data, (ip, port))


def send(bind: int, destinations: list[str], wait: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", bind))
    for dest in destinations:
        ip, port = dest.rsplit(":", 1)
        sock.sendto(f"hello {dest}".encode(), (ip, int(port)))
        time.sleep(0.05)
    replies = []
    end = time.monotonic() + wait
    while time.monotonic() < end:
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            data, (ip, port) = sock.recvfrom(65535)
            replies.append([ip, port, data.decode(errors="replace")])
            if len(replies) >= len(destinations):
                break
    print(json.dumps({"replies": replies}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_serve = sub.add_parser("serve")
    p_serve.add_argument("ports", type=int, nargs="+")
    p_serve.add_argument("--no-reply", action="store_true")
    p_serve.add_argument("--duration", type=float, default=60)
    p_send = sub.add_parser("send")
    p_send.add_argument("--bind", type=int, required=True)
    p_send.add_argument("--to", action="append", required=True)
    p_send.add_argument("--wait", type=float, default=2)
    args = parser.parse_args()
    if args.cmd == "serve":
        serve(args.ports, not args.no_reply, args.duration)
    else:
        send(args.bind, args.to, args.wait)


if __name__ == "__main__":
    sys.exit(main())
