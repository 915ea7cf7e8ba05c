"""A kernel-cache gateway killed with SIGKILL fails closed: its cached entries end in the
kernel within one quantum, then the queue rules drop everything (nobody reads the queues);
nothing ever passes untranslated; ``natlab down`` leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from natlab.lab import down, up
from natlab.realisers.netns import namespaces as netns
from natlab.realisers.netns import procs
from natlab.realisers.netns.state import LabState

from labkit import wait_for

from .conftest import FLOWKIT, nft_tables

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
_LINE = re.compile(r"^(\d+\.\d+) .*?\bIP (\d+\.\d+\.\d+\.\d+)\.(\d+) > ")


def test_a_killed_gateway_stops_cached_traffic_within_a_quantum_and_down_cleans_up(topology, lab_name):
    lab = up(topology(TOPOLOGY))
    gw = lab.state.gateways["gw"]
    assert gw.get("datapath") == "kernel-cache"
    assert "natlab_kc" in nft_tables(lab.netns("gw"))
    capture = lab.popen("server", ["tcpdump", "-n", "-tt", "-l", "-i", "any", "udp", "port", "7000"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: b"listening" in os.read(capture.stderr.fileno(), 4096), timeout=10)
        sender = lab.popen("alice", [sys.executable, str(FLOWKIT), "udp-raw", f"{SERVER}:7000", "5000", "500", "0.01"],
                           stdout=subprocess.PIPE, text=True)
        time.sleep(2.0)  # well cached by now
        os.kill(gw["pid"], signal.SIGKILL)
        killed = time.time()
        sender.communicate(timeout=30)
        time.sleep(0.5)
    finally:
        capture.send_signal(signal.SIGINT)
        out, _ = capture.communicate(timeout=10)
    seen = [m.groups() for line in out.splitlines() if (m := _LINE.match(line))]
    assert len(seen) > 100
    assert {src for _t, src, _p in seen} == {POOL}  # never an inside address
    after = [float(t) for t, _s, _p in seen if float(t) > killed]
    assert not after or max(after) < killed + QUANTUM + 0.2  # closed within one quantum
    assert procs.start_time(gw["pid"]) is None
    down(lab_name)
    assert netns.lab_namespaces(lab_name) == [] and not LabState.new(lab_name).path.parent.exists()
    assert "natlab_kc" not in nft_tables()  # nothing was ever made outside the lab's namespaces
