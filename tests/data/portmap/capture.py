"""Record what real clients send, answered by natlab.portmap's service core.

Run as root; it makes a throwaway namespace (natlab-t<hex>-cap), serves UDP 5351,
SSDP on lo and HTTP 5000 on 127.0.0.1 there, runs Debian's ``natpmpc`` and
miniupnpc's ``upnpc`` against it, writes every request it received into this
directory (``*.bin`` datagrams, ``*.http`` whole HTTP requests) and each
client's output (``*.out``), then removes the namespace::

    sudo .venv/bin/python tests/data/portmap/capture.py

The server half (``serve``) runs inside the namespace; it is test tooling, not
the phase-2 gateway shell.
"""

from __future__ import annotations

import os
import random
import secrets
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIENT_RUNS = {
    "natpmpc-external": ["natpmpc", "-g", "127.0.0.1"],
    "natpmpc-map-udp": ["natpmpc", "-g", "127.0.0.1", "-a", "5000", "5000", "udp", "3600"],
    "natpmpc-map-tcp": ["natpmpc", "-g", "127.0.0.1", "-a", "0", "8080", "tcp", "7200"],
    "natpmpc-delete": ["natpmpc", "-g", "127.0.0.1", "-a", "5000", "5000", "udp", "0"],
    "upnpc-discover-list": ["upnpc", "-m", "lo", "-i", "-l"],
    "upnpc-add": ["upnpc", "-u", "http://127.0.0.1:5000/rootDesc.xml",
                  "-e", "natlab test", "-a", "127.0.0.1", "6000", "6000", "UDP", "3600"],
    "upnpc-add-tcp": ["upnpc", "-u", "http://127.0.0.1:5000/rootDesc.xml",
                      "-a", "127.0.0.1", "7000", "7001", "TCP", "0"],
    "upnpc-list": ["upnpc", "-u", "http://127.0.0.1:5000/rootDesc.xml", "-L"],
    "upnpc-generic": ["upnpc", "-u", "http://127.0.0.1:5000/rootDesc.xml", "-l"],
    "upnpc-delete": ["upnpc", "-u", "http://127.0.0.1:5000/rootDesc.xml", "-d", "6000", "UDP"],
    "upnpc-delete-missing": ["upnpc", "-u", "http://127.0.0.1:5000/rootDesc.xml",
                             "-d", "6001", "TCP"],
    "upnpc-status": ["upnpc", "-u", "http://127.0.0.1:5000/rootDesc.xml", "-s"],
}


def serve(out_dir: Path, seconds: float) -> None:
    sys.path.insert(0, str(HERE.parents[2]))
    from natlab.engine.types import Endpoint
    from natlab.portmap.service import PortMappingService
    from natlab.portmap.types import Datagram, PortMappingPolicy

    svc = PortMappingService(PortMappingPolicy(), "203.0.113.1", random.Random(7),
                             inside_address="127.0.0.1",
                             device_uuid="6c9a2a9e-35f0-4a5e-9b7f-0a0b0c0d0e00")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 5351))
    ssdp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ssdp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ssdp.bind(("0.0.0.0", 1900))
    group = struct.pack("4s4s", socket.inet_aton("239.255.255.250"), socket.inet_aton("127.0.0.1"))
    ssdp.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
    http = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    http.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    http.bind(("127.0.0.1", 5000))
    http.listen(8)
    tag = os.environ.get("CAPTURE_TAG", "run")
    n = 0
    deadline = time.monotonic() + seconds
    (out_dir / "ready").write_text("1")
    while time.monotonic() < deadline:
        ready, _, _ = select.select([udp, ssdp, http], [], [], 0.2)
        for sock in ready:
            now = time.monotonic()
            if sock is http:
                conn, peer = http.accept()
                raw = _read_http(conn)
                n += 1
                tag = (out_dir / "tag").read_text()
                (out_dir / f"{tag}-{n:02d}.http").write_bytes(raw)
                head, _, body = raw.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = dict(l.split(":", 1) for l in lines[1:] if ":" in l)
                headers = {k.strip(): v.strip() for k, v in headers.items()}
                outcome = svc.handle_http(method, path, headers, body,
                                          Endpoint.of(peer[0], peer[1]), now)
                reply = outcome.replies[0]
                status = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(
                    reply.status, "Error")
                conn.sendall(f"HTTP/1.1 {reply.status} {status}\r\nContent-Type: "
                             f"{reply.content_type}\r\nContent-Length: {len(reply.body)}\r\n"
                             "Connection: close\r\n\r\n".encode() + reply.body)
                conn.close()
                continue
            data, peer = sock.recvfrom(2048)
            n += 1
            tag = (out_dir / "tag").read_text()
            kind = "ssdp" if sock is ssdp else "udp5351"
            (out_dir / f"{tag}-{n:02d}.{kind}.bin").write_bytes(data)
            sender = Endpoint.of(peer[0], peer[1])
            handle = svc.handle_ssdp if sock is ssdp else svc.handle_datagram
            for reply in handle(data, sender, now).replies:
                if isinstance(reply, Datagram):
                    sock.sendto(reply.data, peer)


def _read_http(conn: socket.socket) -> bytes:
    conn.settimeout(3)
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = conn.recv(4096)
        if not chunk:
            return raw
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        body += conn.recv(4096)
    return head + b"\r\n\r\n" + body


def main() -> None:
    ns = f"natlab-t{secrets.token_hex(3)}-cap"
    work = HERE / "captured"
    work.mkdir(exist_ok=True)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        run = ["ip", "netns", "exec", ns]
        subprocess.run(run + ["ip", "link", "set", "lo", "multicast", "on", "up"], check=True)
        subprocess.run(run + ["ip", "route", "add", "239.0.0.0/8", "dev", "lo"], check=True)
        (work / "tag").write_text("start")
        server = subprocess.Popen(run + [sys.executable, __file__, "--serve", str(work)])
        while not (work / "ready").exists():
            time.sleep(0.05)
        for name, argv in CLIENT_RUNS.items():
            (work / "tag").write_text(name)
            result = subprocess.run(run + argv, capture_output=True, timeout=30)
            (work / f"{name}.out").write_bytes(result.stdout + result.stderr)
            time.sleep(0.3)
        server.terminate()
        server.wait()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    (work / "ready").unlink()
    (work / "tag").unlink()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), 120)
    else:
        main()
