"""Fixtures for the netns tier: module-scoped labs and small in-namespace socket tools.

A lab comes up once per module (1-2 s); tests switch knobs with
``GatewayClient.set`` and start from an empty table with ``flush``. Everything
a test learns comes from real kernel sockets in the lab's hosts: what a
reflector saw, what a listener received.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

import pytest

import natlab.lab
from natlab.gateway.client import GatewayClient
from natlab.lab.lab import Lab

TOPOLOGIES = Path(__file__).parent / "topologies"

# One script, several modes, run with ``python -c UDP_TOOL MODE ARGS...`` in a host.
# Every mode prints one JSON object per line.
#   reflect IP:PORT...              answer each datagram with "seen SRC" from the
#                                   address it arrived on (one socket per endpoint)
#   ask SPORT DST...                from one socket bound to SPORT, ask each DST in
#                                   turn; print the reply (or a timeout)
#   hold SPORT DST SECONDS          ask DST once, then print every datagram received
#                                   on the same socket for SECONDS
#   send BIND_IP SPORT DST MSG      send one datagram from BIND_IP:SPORT, wait for none
UDP_TOOL = r"""
import json, select, socket, sys, time
def ep(t):
    h, _, p = t.rpartition(":")
    return h, int(p)
def say(**f):
    print(json.dumps(f), flush=True)
def bound(ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    return s
mode, args = sys.argv[1], sys.argv[2:]
if mode == "reflect":
    socks = [bound(*ep(a)) for a in args]
    say(event="listening")
    while True:
        for s in select.select(socks, [], [])[0]:
            data, src = s.recvfrom(2048)
            s.sendto(("seen %s:%d" % src).encode(), src)
elif mode == "ask":
    s = bound("0.0.0.0", int(args[0]))
    s.settimeout(2.0)
    for dst in args[1:]:
        s.sendto(b"ask", ep(dst))
        try:
            data, src = s.recvfrom(2048)
            say(event="reply", to=dst, source="%s:%d" % src, seen=data.decode().split()[-1])
        except socket.timeout:
            say(event="timeout", to=dst)
elif mode == "hold":
    s = bound("0.0.0.0", int(args[0]))
    s.settimeout(2.0)
    s.sendto(b"ask", ep(args[1]))
    try:
        data, src = s.recvfrom(2048)
        say(event="reply", source="%s:%d" % src, seen=data.decode().split()[-1])
    except socket.timeout:
        say(event="timeout")
        sys.exit(1)
    deadline = time.monotonic() + float(args[2])
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, src = s.recvfrom(2048)
        except socket.timeout:
            break
        say(event="recv", source="%s:%d" % src, data=data.decode())
    say(event="done")
elif mode == "send":
    s = bound(args[0], int(args[1]))
    s.sendto(args[3].encode(), ep(args[2]))
"""


def run_tool(lab: Lab, host: str, *args: object, timeout: float = 30) -> list[dict]:
    """Run one UDP_TOOL mode in ``host`` to the end; its JSON lines."""
    done = lab.exec(host, [sys.executable, "-c", UDP_TOOL, *map(str, args)],
                    capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{host} {args}: {done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines()]


class Held:
    """A ``hold`` running in an inside host: a mapping kept open and a listener on it."""

    def __init__(self, lab: Lab, host: str, sport: int, dst: str, seconds: float) -> None:
        self.proc = lab.popen(host, [sys.executable, "-c", UDP_TOOL, "hold", str(sport), dst, str(seconds)],
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
    proc = lab.popen(host, [sys.executable, "-c", UDP_TOOL, "reflect", *endpoints],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line and json.loads(line)["event"] == "listening", proc.stderr.read()
    return proc


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


def _lab(path: Path) -> Iterator[Lab]:
    with natlab.lab.up(path) as lab:
        yield lab


REFLECT_PORTS = (3478, 3479)


def _lab_with_reflectors(topology: Path) -> Iterator[Lab]:
    """A lab with a reflector on every address and port of s1 and s2."""
    for lab in _lab(topology):
        procs = [start_reflector(lab, host, [f"{a}:{p}" for a in lab.host_addresses(host) for p in REFLECT_PORTS])
                 for host in ("s1", "s2")]
        try:
            yield lab
        finally:
            for proc in procs:
                stop(proc)


@pytest.fixture(scope="module")
def one_nat() -> Iterator[Lab]:
    """e2e-one-nat.yaml: alice and bob behind one NAT; s1 and s2 reflecting."""
    yield from _lab_with_reflectors(TOPOLOGIES / "e2e-one-nat.yaml")


@pytest.fixture(scope="module")
def pool_lab() -> Iterator[Lab]:
    """e2e-pool.yaml: one NAT with a pool of two; s1 and s2 reflecting."""
    yield from _lab_with_reflectors(TOPOLOGIES / "e2e-pool.yaml")


@pytest.fixture(scope="module")
def double_nat() -> Iterator[Lab]:
    yield from _lab(TOPOLOGIES / "e2e-double-nat.yaml")
