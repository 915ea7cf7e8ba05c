"""Helpers for tests of labs whose gateways run on the DPDK datapath (tests/netns/dpdk).

Each module brings its lab up once, with ``datapath: dpdk`` on every gateway (so
the tests are about DPDK whatever ``--natlab-datapath`` says; asked for others,
they skip). They skip, saying why, where DPDK cannot run (``unavailable()``).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

import natlab.lab
from natlab.datapaths import registry
from natlab.gateway.client import GatewayClient
from natlab.topology import from_data

E2E = Path(__file__).parent / "netns" / "e2e" / "topologies"


def require_dpdk_binding() -> None:
    """Skip the calling module (at import) unless the DPDK binding is built and loads."""
    binding = pytest.importorskip("natlab.datapaths.dpdk.binding")
    if binding.missing():
        pytest.skip(f"DPDK binding unavailable: {binding.missing()}", allow_module_level=True)
    try:
        binding.load()
    except binding.BackendUnavailable as err:  # e.g. nowhere writable to build it
        pytest.skip(f"DPDK binding unavailable: {err.message}", allow_module_level=True)


def on_dpdk(data: dict[str, Any], **options: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a topology as dicts) with every gateway on dpdk; ``options`` per gateway."""
    gateways = {name: {**gw, "datapath": "dpdk", "dpdk": {**gw.get("dpdk", {}), **options.get(name, {})}}
                for name, gw in data["gateways"].items()}
    return {**data, "gateways": gateways, "name": f"t{secrets.token_hex(3)}"}


def lab_of(data: dict[str, Any]) -> Iterator[natlab.lab.Lab]:
    why = registry.unavailable("dpdk")
    if why:
        pytest.skip(f"the dpdk datapath is unavailable: {why}")
    with natlab.lab.up(from_data(data)) as lab:
        yield lab


def client(lab: natlab.lab.Lab, gateway: str) -> GatewayClient:
    return GatewayClient(lab.state.gateways[gateway]["control_socket"], name=gateway)


def run(lab: natlab.lab.Lab, node: str, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return lab.exec(node, argv, capture_output=True, text=True, timeout=timeout)


def python(lab: natlab.lab.Lab, node: str, script: str, *args: Any, timeout: float = 60) -> str:
    done = run(lab, node, [sys.executable, "-c", script, *map(str, args)], timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def inside_address(lab: natlab.lab.Lab, gateway: str) -> str:
    gw = lab.topology.node(gateway)
    return str(gw.leg_on(gw.inside).addresses[0].ip)
