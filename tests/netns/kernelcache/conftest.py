"""The session cache against a real kernel: the gateway tests' three namespaces (inside host,
gateway, outside host; tests/netns/gateway/conftest.py) with the gateway on the kernel-cache
datapath, and readers of what the kernel holds and counted.

Every test here is about the kernel-cache datapath only (``datapaths("kernel-cache")``): it
names the datapath in its spec whatever ``--natlab-datapath`` says.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from gateway.conftest import GwLab, gwlab, received, split  # noqa: F401 - the fixture, shared
from natlab.behaviours.presets import policy_from_dict, policy_to_dict
from natlab.datapaths import registry
from natlab.gateway.spec import GatewaySpec

FLOWKIT = Path(__file__).with_name("flowkit.py")
OUT = GwLab.OUTSIDE_ADDRS[0]
EIM = {"mapping": "endpoint-independent", "filtering": "address-and-port-dependent"}


@pytest.fixture(autouse=True)
def _kernel_cache_here() -> None:
    why = registry.unavailable("kernel-cache")
    if why:
        pytest.skip(f"the kernel-cache datapath is unavailable: {why}")


def policy(data: dict[str, Any]) -> dict[str, Any]:
    return policy_to_dict(policy_from_dict({**EIM, **data}))


def kc_spec(lab: GwLab, data: Optional[dict[str, Any]] = None, quantum: float = 1.0) -> GatewaySpec:
    return lab.spec(policy(data or {}), datapath="kernel-cache", extra={"kernel_cache": {"quantum": quantum}})


def in_ns(ns: str, *argv: object) -> list[str]:
    return ["ip", "netns", "exec", ns, *map(str, argv)]


def flow(ns: str, mode: str, *args: object, timeout: float = 60) -> dict[str, Any]:
    """Run one flowkit mode in ``ns`` to its end; what it printed."""
    done = subprocess.run(in_ns(ns, sys.executable, FLOWKIT, mode, *args), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def flow_bg(lab: GwLab, ns: str, mode: str, *args: object) -> subprocess.Popen:
    """A flowkit mode in the background (stopped at teardown); its first line already read if
    it announces itself (servers and catchers print ``{"event": "listening"}``)."""
    proc = subprocess.Popen(in_ns(ns, sys.executable, FLOWKIT, mode, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lab.procs.append(proc)
    return proc


def listening(proc: subprocess.Popen) -> subprocess.Popen:
    line = proc.stdout.readline()
    assert line and json.loads(line)["event"] == "listening", proc.stderr.read()
    return proc


def result(proc: subprocess.Popen, timeout: float = 60) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.splitlines()[-1])


def session_elements(lab: GwLab) -> dict[str, int]:
    """How many elements each session map of the gateway's table holds now (live ones only)."""
    done = subprocess.run(in_ns(lab.gw, "nft", "-j", "list", "table", "ip", "natlab_kc"),
                          capture_output=True, text=True, check=True)
    out = {}
    for item in json.loads(done.stdout)["nftables"]:
        found = item.get("map")
        if found and found["name"] in ("out_udp", "out_tcp", "out_icmp", "in_udp", "in_tcp", "in_icmp"):
            out[found["name"]] = len(found.get("elem", ()))
    return out


def nft_tables(ns: Optional[str] = None) -> str:
    argv = ["nft", "list", "tables"]
    done = subprocess.run(in_ns(ns, *argv) if ns else argv, capture_output=True, text=True)
    return done.stdout


def snmp(ns: str, proto: str) -> dict[str, int]:
    """``/proc/net/snmp`` of ``ns`` for ``proto`` ("Udp", "Tcp")."""
    text = subprocess.run(in_ns(ns, "cat", "/proc/net/snmp"), capture_output=True, text=True, check=True).stdout
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith(f"{proto}:")]
    return dict(zip(rows[0], map(int, rows[1])))


def offload(ns: str, dev: str, on: bool) -> None:
    """Checksum and segmentation offload of ``dev`` in ``ns`` (off: the kernel computes every
    checksum in software at transmit, so a receiver checks what the gateway's rewrite left)."""
    state = "on" if on else "off"
    subprocess.run(in_ns(ns, "ethtool", "-K", dev, "tx", state),
                   capture_output=True, text=True, check=True)
