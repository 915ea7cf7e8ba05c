"""Helpers every lab test uses: probes run in a lab's hosts, and small waits.

The built-in probes (:mod:`natlab.hostprogs.probe`) print JSON lines; these run
them in a node and read what they saw. Imported by module name (pytest puts
``tests/`` on ``sys.path``): ``from labkit import ask, probe_argv``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from typing import Sequence

from natlab.gateway.client import GatewayClient
from natlab.lab import Lab


def probe_argv(command: str, *args: object) -> list[str]:
    """``python -m natlab.hostprogs.probe COMMAND ARGS`` (see natlab/hostprogs/probe.py for the JSON lines each prints)."""
    return [sys.executable, "-m", "natlab.hostprogs.probe", command, *map(str, args)]


def run_probe(lab: Lab, host: str, command: str, *args: object, timeout: float = 30) -> list[dict]:
    """Run one probe in ``host`` to the end; its JSON lines. It must succeed (every reply came)."""
    done = lab.exec(host, probe_argv(command, *args), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{host} {command} {args}: {done.stdout}{done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines()]


def ask(lab: Lab, host: str, sport: int, *servers: str) -> list[dict]:
    """From one socket bound to ``sport`` in ``host``, ask each reflector in turn; one reply each."""
    return run_probe(lab, host, "udp-send", "--sport", sport, *(a for s in servers for a in ("--to", s)))


def send_from(lab: Lab, host: str, source: str, to: str, message: str) -> None:
    """Send one datagram from ``source`` (ADDR:PORT, may be a reflector's) to ``to``; wait for none."""
    saddr, _, sport = source.rpartition(":")
    run_probe(lab, host, "udp-send", "--saddr", saddr, "--sport", sport, "--to", to,
              "--message", message, "--no-wait")


class Held:
    """An inside host asking a reflector, then holding the socket open: a mapping and a listener on it."""

    def __init__(self, lab: Lab, host: str, sport: int, dst: str, seconds: float) -> None:
        self.proc = lab.popen(host, probe_argv("udp-send", "--sport", sport, "--to", dst, "--hold", seconds),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = json.loads(self.proc.stdout.readline() or '{"event": "exited"}')
        assert first["event"] == "reply", f"no reply from {dst}: {first} {self.proc.stderr.read()}"
        self.external = first["seen"]
        """The external endpoint the reflector saw: the mapping under test."""

    def received(self, timeout: float = 30) -> list[str]:
        """Wait for the hold to end; the sources of the datagrams it received."""
        out, err = self.proc.communicate(timeout=timeout)
        lines = [json.loads(line) for line in out.splitlines()]
        assert lines and lines[-1]["event"] == "done", err
        return [line["source"] for line in lines if line["event"] == "recv"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def start_reflector(lab: Lab, host: str, endpoints: Sequence[str]) -> subprocess.Popen:
    """A reflector on every one of ``endpoints`` until stopped."""
    argv = probe_argv("udp-reflect", "--count", 0, "--timeout", 0, *(a for e in endpoints for a in ("--bind", e)))
    proc = lab.popen(host, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line and json.loads(line)["event"] == "listening", proc.stderr.read()
    # It reports every datagram; drain that so it never blocks on a full pipe
    # (stop_reflector, not stop: this thread is the pipe's only reader).
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc


def stop_reflector(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    proc.stderr.close()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def gateway(lab: Lab, name: str) -> GatewayClient:
    return GatewayClient(lab.state.gateways[name]["control_socket"], name=name)


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
