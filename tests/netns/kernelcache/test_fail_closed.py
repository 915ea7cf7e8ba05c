"""A kernel-cache gateway killed with SIGKILL fails closed: its cached entries end in the
kernel within one quantum, then the queue rules drop everything (nobody reads the queues);
nothing ever passes untranslated; ``natlab down`` leaves nothing behind."""

from __future__ import annotations


import pytest

from natlab.lab import down, up
from natlab.realisers.netns import namespaces as netns
from natlab.realisers.netns import procs
from natlab.realisers.netns.state import LabState

from kernelcache_kit import assert_failed_closed, kill_under_a_cached_flow

from .conftest import nft_tables

pytestmark = [pytest.mark.netns, pytest.mark.datapaths("kernel-cache"), pytest.mark.usefixtures("needs_daemon")]

SERVER = "203.0.113.100"
POOL = "203.0.113.1"
QUANTUM = 1.0
TOPOLOGY = {
    "networks": {"outside": {"subnet": "203.0.113.0/24"}, "inside": {"subnet": "192.168.60.0/24"}},
    "gateways": {"gw": {"behaviour": "rfc-recommended", "inside": "inside", "outside": "outside",
                        "pool": [POOL], "datapath": "kernel-cache", "kernel_cache": {"quantum": QUANTUM}}},
    "hosts": {"alice": {"network": "inside"}, "server": {"network": "outside", "address": SERVER}},
}


def test_a_killed_gateway_stops_cached_traffic_within_a_quantum_and_down_cleans_up(topology, lab_name):
    lab = up(topology(TOPOLOGY))
    gw = lab.state.gateways["gw"]
    assert gw.get("datapath") == "kernel-cache"
    assert "natlab_kc" in nft_tables(lab.netns("gw"))
    seen, killed = kill_under_a_cached_flow(lab, gw["pid"], SERVER)
    assert_failed_closed(seen, killed, POOL, QUANTUM)
    assert procs.start_time(gw["pid"]) is None
    down(lab_name)
    assert netns.lab_namespaces(lab_name) == [] and not LabState.new(lab_name).path.parent.exists()
    assert "natlab_kc" not in nft_tables()  # nothing was ever made outside the lab's namespaces
