"""Small helpers shared by lab tests."""

from __future__ import annotations

import json
import re
import subprocess

from natlab.lab import Lab

UDP_ECHO = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))  # reply from the address addressed
print("ready", flush=True)
data, peer = s.recvfrom(100)
s.sendto(data, peer)
print(json.dumps(peer), flush=True)
"""

UDP_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
print(s.recvfrom(100)[0].decode())
"""


def udp_source_seen(lab: Lab, client: str, server: str, address: str, port: int = 4000) -> tuple[str, int]:
    """Send one datagram from ``client`` to ``server`` at ``address``; the source the server saw."""
    import sys

    listener = lab.popen(server, [sys.executable, "-c", UDP_ECHO, address, str(port)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        done = lab.exec(client, [sys.executable, "-c", UDP_SEND, address, str(port)],
                        capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "hello"
        ip, sport = json.loads(listener.stdout.readline())
        return ip, sport
    finally:
        listener.kill()
        listener.wait()


def wait_for(condition, timeout: float = 3.0) -> bool:
    """Poll ``condition`` until true or ``timeout`` seconds passed (no fixed sleeps)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def ping(lab: Lab, node: str, address: str) -> bool:
    done = lab.exec(node, ["ping", "-c", "1", "-W", "2", address], capture_output=True)
    return done.returncode == 0


def root_snapshot() -> dict[str, str]:
    """The root namespace's links, addresses, routes and iptables rules (read-only)."""

    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout

    links = "\n".join(line.split(":")[1].strip().split("@")[0]
                      for line in run("ip", "-o", "link").splitlines())
    rules = re.sub(r"\[\d+:\d+\]", "", "\n".join(
        line for line in run("iptables-save").splitlines() if not line.startswith("#")))
    return {"links": links, "addrs": run("ip", "-o", "addr"), "routes": run("ip", "route"),
            "iptables": rules}
