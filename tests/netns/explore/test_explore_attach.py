"""Attaching the workbench to a running netns lab, without a browser: what it shows, does and leaves.

The lab is brought up by the test (``running_lab``), as ``natlab up`` would. The
workbench must mirror what the gateways run *now* (a knob changed by ``natlab
set`` before it attached), drive the real gateways (knobs, pool), tell each
probe's walk from the gateways' records, save a scenario that replays on a fresh
netns lab, and leave the lab up when it closes. ``natlab explore --lab`` and
``--backend netns`` are run as the commands they are.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from explorekit import lab_is_up

import natlab.lab
from natlab.gateway.client import GatewayClient

REPO = Path(__file__).resolve().parents[3]
TWO_HOMES = REPO / "topologies" / "two-homes.yaml"
pytestmark = [pytest.mark.netns, pytest.mark.any_datapath]


def gateway(lab: Any, name: str) -> GatewayClient:
    return GatewayClient(lab.state.gateways[name]["control_socket"], name=name)


def test_attaching_mirrors_the_gateways_as_they_run_now_and_closing_leaves_the_lab_up(
        running_lab: Any, tmp_path: Path) -> None:
    from natlab.explore.session import Workbench

    gateway(running_lab, "nat-a").set(["timeouts.udp=45"])  # as `natlab set nat-a timeouts.udp=45` does
    wb = Workbench(lab=running_lab.name)
    try:
        assert wb.attached and wb.topology()["backend"] == "netns" and wb.topology()["walk"] == "gateway records"
        knobs = {r["knob"]: r["value"] for r in wb.state()["gateways"]["nat-a"]["knobs"]}
        assert knobs["timeouts.udp"] == "45" and wb.state()["gateways"]["nat-a"]["changed"] == {"timeouts.udp": "45"}
        assert wb.recording.steps()[0]["step"] == {"set": {"gateway": "nat-a", "knobs": {"timeouts.udp": 45.0}}}

        wb.set_knob("nat-a", "filtering", "address-dependent")
        assert gateway(running_lab, "nat-a").status()["policy"]["filtering"] == "address-dependent"
        out = wb.probe("udp", "alice", "server:3478", 40000, reply=True)
        assert out["result"]["seen"] == "203.0.113.1:40000" and out["result"]["replied"]
        there, back = out["packets"]
        assert there["hops"][0]["verdict"] == "forward" and "mapping-created" in there["hops"][0]["how"]
        assert there["hops"][0]["out"] == "udp 203.0.113.1:40000 -> 203.0.113.100:3478"
        assert back["hops"][0]["out"] == "udp 203.0.113.100:3478 -> 192.168.1.2:40000"
        assert [m["external"] for m in wb.state()["gateways"]["nat-a"]["mappings"]] == ["203.0.113.1:40000"]
        saved = wb.save(tmp_path / "attached.yaml")  # replayed on a fresh netns lab of the same file
        assert saved["verified"] == "passed"
        doc = yaml.safe_load((tmp_path / "attached.yaml").read_text())
        assert "Attached to the running lab" in doc["description"] and doc["backends"] == ["netns"]
    finally:
        wb.close()
    assert lab_is_up(running_lab.name)
    assert [m["external"] for m in gateway(running_lab, "nat-a").mappings()] == ["203.0.113.1:40000"]


def test_a_pool_change_reaches_the_real_gateway_and_bad_pools_change_nothing(running_lab: Any) -> None:
    from natlab.explore.backend import ConfigError
    from natlab.explore.session import Workbench

    wb = Workbench(lab=running_lab.name)
    try:
        for bad, words in [("203.0.113.30, 203.0.113.30", "listed twice"), ("", "at least one address"),
                           ("nat-b", "invalid pool address"), ("203.0.113.100", "server's address")]:
            with pytest.raises(ConfigError, match=words):
                wb.set_pool("nat-b", bad)
        assert gateway(running_lab, "nat-b").status()["pool"] == ["203.0.113.21", "203.0.113.22"]
        wb.set_pool("nat-b", "203.0.113.30")
        assert gateway(running_lab, "nat-b").status()["pool"] == ["203.0.113.30"]
        out = wb.probe("udp", "bob", "server:3478", 6000)
        assert out["result"]["seen"].startswith("203.0.113.30:")
        assert out["packets"][0]["hops"][0]["out"].startswith("udp 203.0.113.30:")
    finally:
        wb.close()
    assert lab_is_up(running_lab.name)


def test_an_unsolicited_probe_shows_where_it_was_dropped_and_why(running_lab: Any) -> None:
    from natlab.explore.session import Workbench

    wb = Workbench(lab=running_lab.name)
    try:
        wb.probe("udp", "alice", "server:3478", 40000)
        (pkt,) = wb.probe("udp", "server", "nat-a:40000", 5555, at="alice:40000")["packets"]
        assert (pkt["outcome"], pkt["end"], pkt["reason"]) == ("dropped", "nat-a", "filtered")
        assert pkt["hops"][0]["in"] == "udp 203.0.113.100:5555 -> 203.0.113.1:40000"
    finally:
        wb.close()


def test_a_file_that_is_not_the_labs_topology_is_refused(running_lab: Any) -> None:
    from natlab.explore.backend import ConfigError
    from natlab.explore.session import Workbench

    with pytest.raises(ConfigError, match="is not the topology of lab"):
        Workbench(REPO / "topologies" / "double-nat.yaml", lab=running_lab.name)
    assert lab_is_up(running_lab.name)


def _serve(args: list[str]) -> tuple[subprocess.Popen, str]:
    """``natlab explore ARGS --no-browser`` started; its URL once printed."""
    proc = subprocess.Popen([sys.executable, "-m", "natlab", "explore", *args, "--no-browser"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "token=" in line:
            return proc, line.strip()
    proc.wait(30)
    raise AssertionError(f"natlab explore printed no URL: {proc.stderr.read() if proc.stderr else ''}")


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops it
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what this test started
            proc.wait()


def _get(url: str, path: str) -> Any:
    base, token = url.split("/?token=")
    with urllib.request.urlopen(f"{base}{path}?token={token}", timeout=30) as answer:
        return json.loads(answer.read())


def test_explore_lab_attaches_and_ctrl_c_leaves_the_lab_up(running_lab: Any) -> None:
    proc, url = _serve(["--lab", running_lab.name])
    try:
        topo = _get(url, "/api/topology")
        assert topo["attached"] and topo["backend"] == "netns" and topo["name"] == running_lab.name
        assert _get(url, "/api/state")["gateways"]["nat-b"]["addresses"] == ["203.0.113.21", "203.0.113.22"]
    finally:
        assert _stop(proc) in (0, 130), proc.stderr.read() if proc.stderr else ""  # 130: natlab after Ctrl-C
    assert lab_is_up(running_lab.name)


def test_explore_backend_netns_takes_its_own_lab_down_on_ctrl_c(lab_name: str, tmp_path: Path) -> None:
    from natlab.explore.backend import unavailable

    if reason := unavailable("netns"):
        pytest.skip(f"netns tier skipped: {reason}")
    topology = tmp_path / "mine.yaml"
    topology.write_text(TWO_HOMES.read_text().replace("name: two-homes", f"name: {lab_name}"))
    proc, url = _serve(["--backend", "netns", str(topology)])
    try:
        assert _get(url, "/api/topology")["attached"] is False
        assert lab_name in natlab.lab.list_labs()
    finally:
        assert _stop(proc) in (0, 130), proc.stderr.read() if proc.stderr else ""  # 130: natlab after Ctrl-C
    assert lab_name not in natlab.lab.list_labs()


def test_changes_made_by_other_hands_show_up_and_are_recorded(running_lab: Any, tmp_path: Path) -> None:
    from natlab.explore.session import Workbench

    wb = Workbench(lab=running_lab.name)
    try:
        wb.probe("udp", "alice", "server:3478", 40000)
        # what `natlab set`, `natlab advance` and a set-pool from a shell do meanwhile
        gateway(running_lab, "nat-a").set(["timeouts.udp=30"])
        gateway(running_lab, "nat-a").advance(31)
        gateway(running_lab, "nat-b").set_pool(["203.0.113.40"])
        state = wb.state()
        nat_a = state["gateways"]["nat-a"]
        assert {r["knob"]: r["value"] for r in nat_a["knobs"]}["timeouts.udp"] == "30"
        assert nat_a["clock"] == 31 and nat_a["mappings"] == []
        assert state["gateways"]["nat-b"]["addresses"] == ["203.0.113.40"]
        outside = [s for s in state["record"] if s["observed"].startswith("changed outside the workbench: ")]
        assert [next(iter(s["step"])) for s in outside] == ["set", "advance", "set_pool"]
        assert wb.probe("udp", "bob", "server:3478", 6000)["result"]["seen"].startswith("203.0.113.40:")
        assert wb.save(tmp_path / "others.yaml")["verified"] == "passed"
    finally:
        wb.close()
