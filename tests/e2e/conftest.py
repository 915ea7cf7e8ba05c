"""Fixtures for the netns tier: module-scoped labs and the probes tests run in their hosts.

A lab comes up once per module (1-2 s); tests switch knobs with
``GatewayClient.set`` and start from an empty table with ``flush``. Everything
a test learns comes from real kernel sockets in the lab's hosts: what a
reflector saw, what a listener received.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, Sequence

import pytest

import natlab.lab
from natlab.gateway.client import GatewayClient
from natlab.realisers.netns.lab import Lab

TOPOLOGIES = Path(__file__).parent / "topologies"


def probe_argv(command: str, *args: object) -> list[str]:
    """``python -m natlab.hostprogs.probe COMMAND ARGS`` (see natlab/probe.py for the JSON lines each prints)."""
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
                stop_reflector(proc)


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
