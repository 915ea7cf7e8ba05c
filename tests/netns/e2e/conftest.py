"""Fixtures for the netns tier: module-scoped labs and the probes tests run in their hosts.

A lab comes up once per module (1-2 s); tests switch knobs with
``GatewayClient.set`` and start from an empty table with ``flush``. Everything
a test learns comes from real kernel sockets in the lab's hosts: what a
reflector saw, what a listener received.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

import natlab.lab
from labkit import start_reflector, stop_reflector
from natlab.lab import Lab

TOPOLOGIES = Path(__file__).parent / "topologies"


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
def one_nat(natlab_datapath) -> Iterator[Lab]:
    """e2e-one-nat.yaml: alice and bob behind one NAT; s1 and s2 reflecting."""
    yield from _lab_with_reflectors(TOPOLOGIES / "e2e-one-nat.yaml")


@pytest.fixture(scope="module")
def pool_lab(natlab_datapath) -> Iterator[Lab]:
    """e2e-pool.yaml: one NAT with a pool of two; s1 and s2 reflecting."""
    yield from _lab_with_reflectors(TOPOLOGIES / "e2e-pool.yaml")


@pytest.fixture(scope="module")
def double_nat(natlab_datapath) -> Iterator[Lab]:
    yield from _lab(TOPOLOGIES / "e2e-double-nat.yaml")
