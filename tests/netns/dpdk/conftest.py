"""The dpdk tier's fixtures: skip where the DPDK datapath cannot run (helpers: tests/dpdk_kit.py)."""

from __future__ import annotations

import pytest

from natlab.datapaths import registry


@pytest.fixture(autouse=True)
def _dpdk_here() -> None:
    why = registry.unavailable("dpdk")
    if why:
        pytest.skip(f"the dpdk datapath is unavailable: {why}")
