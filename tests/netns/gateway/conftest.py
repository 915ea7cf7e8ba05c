"""A three-namespace topology for gateway tests: inside host, gateway, outside host.

::

    [natlab-gwtest-N-in]  eth0 192.168.77.2/24
            | veth
    [natlab-gwtest-N-gw]  in0 192.168.77.1/24   out0 203.0.113.1/24 + pool 203.0.113.10
            | veth
    [natlab-gwtest-N-out] eth0 203.0.113.2/24, 203.0.113.3/24

Veths are created directly between the namespaces; nothing is created in the
host's namespace. Namespaces (and every process a test starts in them) are
removed at teardown, whatever happened.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from natlab.gateway.client import GatewayClient
from natlab.datapaths import registry
from natlab.gateway.spec import GatewaySpec
from natlab.realisers.netns.build import prepare_datapath

from natlab.topology.model import DpdkEntry, KernelCacheEntry

DATAPATH_OPTIONS = {"kernel-cache": {"kernel_cache": KernelCacheEntry().model_dump()},
                    "dpdk": {"dpdk": DpdkEntry().model_dump()}}
"""What a topology's defaults give each datapath (``spec.extra``), for hand-made specs."""

INSIDE_ADDR = "192.168.77.2"
POOL = "203.0.113.10"
OUTSIDE_ADDRS = ("203.0.113.2", "203.0.113.3")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


@dataclass
class GwLab:
    INSIDE_ADDR = INSIDE_ADDR
    POOL = POOL
    OUTSIDE_ADDRS = OUTSIDE_ADDRS
    prefix: str
    run_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    gateway: subprocess.Popen | None = None

    @property
    def inside(self) -> str:
        return f"{self.prefix}-in"

    @property
    def gw(self) -> str:
        return f"{self.prefix}-gw"

    @property
    def outside(self) -> str:
        return f"{self.prefix}-out"

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return (self.inside, self.gw, self.outside)

    def build(self) -> None:
        for ns in self.namespaces:
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.inside, "link", "add", "eth0", "type", "veth", "peer", "name", "in0", "netns", self.gw)
        _ip("-n", self.gw, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", self.outside)
        _ip("-n", self.inside, "addr", "add", f"{INSIDE_ADDR}/24", "dev", "eth0")
        _ip("-n", self.gw, "addr", "add", "192.168.77.1/24", "dev", "in0")
        _ip("-n", self.gw, "addr", "add", "203.0.113.1/24", "dev", "out0")
        _ip("-n", self.gw, "addr", "add", f"{POOL}/24", "dev", "out0")
        for address in OUTSIDE_ADDRS:
            _ip("-n", self.outside, "addr", "add", f"{address}/24", "dev", "eth0")
        for ns, dev in ((self.inside, "eth0"), (self.gw, "in0"), (self.gw, "out0"), (self.outside, "eth0")):
            _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", self.inside, "route", "add", "default", "via", "192.168.77.1")
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
            subprocess.run(_in_ns(self.gw, "sysctl", "-qw", key), check=True)

    def spec(self, policy: dict[str, Any], **changes: Any) -> GatewaySpec:
        """A spec on the datapath the test run chose (``--natlab-datapath``; else the default)."""
        datapath = registry.chosen(None)
        fields: dict[str, Any] = dict(
            lab="gwtest", name="nat-a", netns=self.gw, inside_ifaces=("in0",), outside_iface="out0",
            inside_subnets=("192.168.77.0/24",), outside_subnet="203.0.113.0/24", pool=(POOL,),
            preset="test", policy=policy, seed=7, run_dir=str(self.run_dir), datapath=datapath,
            extra={key: {**options, **registry.forced_options(datapath)}
                   for key, options in DATAPATH_OPTIONS.get(datapath, {}).items()})
        fields.update(changes)
        return GatewaySpec(**fields)

    def start_gateway(self, spec: GatewaySpec, *, engine: str = "nat",
                      run: tuple[str, ...] = ("-m", "natlab.gateway")) -> GatewayClient:
        """Start the gateway (``run``: how python runs it, e.g. ``("-c", code)``) and wait for it."""
        spec.spec_path.write_text(spec.to_json())
        prepare_datapath(spec)
        env = dict(os.environ, NATLAB_GATEWAY_ENGINE=engine)
        log = open(spec.log_path, "ab")
        self.gateway = subprocess.Popen(
            _in_ns(self.gw, sys.executable, *run, str(spec.spec_path)),
            stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + 15
        while not spec.control_socket.exists():
            if self.gateway.poll() is not None:
                raise AssertionError(f"gateway exited {self.gateway.returncode}:\n{self.log(spec)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway did not come up:\n{self.log(spec)}")
            time.sleep(0.05)
        return GatewayClient(spec.control_socket, name=spec.name)

    def log(self, spec: GatewaySpec) -> str:
        return spec.log_path.read_text() if spec.log_path.exists() else ""

    def stop_gateway(self, sig: int = signal.SIGTERM) -> int:
        assert self.gateway is not None
        self.gateway.send_signal(sig)
        return self.gateway.wait(10)

    def serve_udp(self, ns: str, *ports: int, reply: bool = True) -> subprocess.Popen:
        """A reflector on ``ports`` in ``ns`` (answering unless ``reply`` is false); see ``received``."""
        argv = _probe("udp-reflect", "--count", 0, "--timeout", 60, *(a for p in ports for a in ("--port", p)))
        if not reply:
            argv.append("--no-reply")
        proc = subprocess.Popen(_in_ns(ns, *argv), stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert json.loads(proc.stdout.readline())["event"] == "listening"
        return proc

    def send_udp(self, ns: str, bind: int, *destinations: str, wait: float = 1.5) -> list[dict[str, Any]]:
        """From one socket bound to ``bind``, send to each destination in turn; the replies that came."""
        argv = _probe("udp-send", "--sport", bind, "--timeout", wait, *(a for d in destinations for a in ("--to", d)))
        done = subprocess.run(_in_ns(ns, *argv), capture_output=True, text=True,
                              timeout=wait * len(destinations) + 20)
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert done.returncode in (0, 1) and len(lines) == len(destinations), done.stderr  # 1: some timed out
        return [line for line in lines if line["event"] == "reply"]

    @property
    def queue_rules(self) -> bool:
        """The gateway's datapath steers packets with iptables queue rules in its namespace
        (nfqueue, kernel-cache: the kernel forwards); dpdk takes the frames off the wire."""
        return registry.chosen(None) in ("nfqueue", "kernel-cache")

    def iptables(self) -> str:
        return subprocess.run(_in_ns(self.gw, "iptables", "-t", "mangle", "-S"),
                              capture_output=True, text=True, check=True).stdout

    def forwarding(self) -> str:
        """The gateway namespace's ``net.ipv4.ip_forward``."""
        return subprocess.run(_in_ns(self.gw, "sysctl", "-n", "net.ipv4.ip_forward"),
                              capture_output=True, text=True, check=True).stdout.strip()

    received = staticmethod(lambda proc, settle=0.5: received(proc, settle=settle))

    def teardown(self) -> None:
        for proc in [*self.procs, self.gateway]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _probe(command: str, *args: object) -> list[str]:
    return [sys.executable, "-m", "natlab.hostprogs.probe", command, *map(str, args)]


def split(endpoint: str) -> tuple[str, int]:
    """``"ADDR:PORT"`` (as the probes print endpoints) as (address, port)."""
    address, _, port = endpoint.rpartition(":")
    return address, int(port)


def received(proc: subprocess.Popen, *, settle: float = 0.5) -> list[dict[str, Any]]:
    """Stop a ``serve_udp`` reflector; the datagrams it reported (``source``, ``at``, ``data``)."""
    time.sleep(settle)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    return [event for line in out.splitlines() if (event := json.loads(line))["event"] == "recv"]


@pytest.fixture
def gwlab(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces and NFQUEUE rules")
    lab = GwLab(prefix=f"natlab-gwtest-{secrets.token_hex(3)}", run_dir=tmp_path)
    try:
        lab.build()
        yield lab
    finally:
        lab.teardown()
