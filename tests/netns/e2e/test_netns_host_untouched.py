"""A lab's whole life leaves the host's root namespace firewall as it found it (read-only check)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

import natlab.lab
from labkit import gateway, send_from
from natlab.topology import load

TOPOLOGIES = Path(__file__).parent / "topologies"

pytestmark = pytest.mark.netns


def root_ruleset() -> list[str]:
    """``iptables-save`` of the root namespace without its timestamp comments."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if not line.startswith("#")]


def test_root_namespace_iptables_are_the_same_before_and_after_a_lab():
    if shutil.which("iptables-save") is None:  # checked after the tier's own skip (not root)
        pytest.skip("iptables-save not installed (apt-get install iptables)")
    topo = dataclasses.replace(load(TOPOLOGIES / "e2e-pool.yaml"), name="e2e-host-untouched")
    before = root_ruleset()
    with natlab.lab.up(topo) as lab:
        gateway(lab, "nat").set(["timeouts.udp=60"])  # a knob change rewrites the gateway's rules
        send_from(lab, "p1", "0.0.0.0:5000", "192.0.2.100:9", "x")
        assert root_ruleset() == before
    assert root_ruleset() == before
