"""The README's first command, end to end: real namespaces, NFQUEUE gateways, kernel sockets."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.netns


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_demo_exchanges_udp_through_both_nats_and_leaves_nothing_behind():
    before = _namespaces()
    done = subprocess.run([sys.executable, "-m", "natlab", "demo"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    out = " ".join(done.stdout.split())
    # nat-a (port-restricted cone) preserves alice's port; nat-b (symmetric) picks from its pool.
    assert "203.0.113.1:40000" in out
    assert "203.0.113.21:" in out or "203.0.113.22:" in out
    assert out.count(" yes ") >= 2
    # Symmetric vs port-restricted cone: hole punching fails (RFC 4787 section 4.1, 5).
    assert "hole punch failed" in out
    assert not {ns for ns in _namespaces() - before if ns.startswith("natlab-two-homes")}
