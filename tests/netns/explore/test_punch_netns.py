"""The hole-punch panel on a real netns lab: the built-in peer runs, and nothing is left running.

The workbench attaches to a running two-homes lab. Behind two full-cone NATs the
built-in peer (``python -m natlab.hostprogs.peer``, rendezvous on ``server``) gets
through: checks cross both NATs, told from the peers' traces and the gateways'
records. Behind two symmetric NATs it fails, and each check's row names the NAT
that filtered it, from that NAT's own ``filtered`` event. No process it started is
left in the lab's namespaces. Saved as a scenario, ``natlab run --backend netns``
passes on it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.any_datapath]


def lab_pids(lab: Any) -> set[str]:
    """PIDs in the lab's host namespaces (its gateways run in their own)."""
    out: set[str] = set()
    for host in lab.state.hosts:
        done = subprocess.run(["ip", "netns", "pids", lab.state.netns_of(host)], capture_output=True, text=True)
        out.update(done.stdout.split())
    return out


def checks(out: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in out["messages"] if m.get("kind") == "check" and not m.get("fold")]


def test_the_built_in_peer_punches_through_full_cones_and_is_filtered_by_symmetric_nats(
        punch_lab: Any, tmp_path: Path) -> None:
    from natlab.explore.session import Workbench

    wb = Workbench(lab=punch_lab.name)
    try:
        before = lab_pids(punch_lab)
        wb.configure("nat-a", "full-cone")
        wb.configure("nat-b", "full-cone")
        out = wb.punch("alice", "bob", "server", 3)
        assert out["ok"] is True and out["how"] == "program", out["summary"]
        assert "The built-in peer ran" in out["note"] and "Simulated" not in out["note"]
        assert all(s["report"]["event"] == "punched" and s["returncode"] == 0 for s in out["sides"].values())
        assert out["reflexive"] == {"alice": "203.0.113.1:40000", "bob": "203.0.113.21:40000"}
        through = [m for m in checks(out) if m["outcome"] == "delivered" and m["from"] == "alice" and m["end"] == "bob"]
        assert through, out["messages"]
        assert [(h["node"], h["verdict"]) for h in through[0]["hops"]] == [("nat-a", "forward"), ("nat-b", "forward")]
        assert through[0]["observed"] == "peer trace and gateway records" and through[0]["t"] > 0
        register = out["messages"][0]
        assert register["label"].endswith("registers with the rendezvous (host candidate "
                                          f"{'192.168.1.2' if register['from'] == 'alice' else '192.168.2.2'}:40000)")
        assert any(h.get("opens", "").startswith("opens nat-a: mapping 192.168.1.2:40000 -> 203.0.113.1:40000")
                   for m in out["messages"] for h in m["hops"])
        assert lab_pids(punch_lab) == before  # the rendezvous ended by PID, the peers exited

        wb.configure("nat-a", "symmetric")
        wb.configure("nat-b", "symmetric")
        out = wb.punch("alice", "bob", "server", 2)
        assert out["ok"] is False and all(s["report"]["event"] == "failed" for s in out["sides"].values())
        filtered = [m for m in checks(out) if m["outcome"] == "dropped"]
        assert {(m["from"], m["end"], m["reason"]) for m in filtered} == {("alice", "nat-b", "filtered"),
                                                                          ("bob", "nat-a", "filtered")}
        assert all(m["hops"][-1]["how"].startswith("event #") and "filtered" in m["hops"][-1]["how"] for m in filtered)
        assert any(f["count"] > 5 for f in out["messages"] if f.get("fold"))  # a check a round, folded
        assert lab_pids(punch_lab) == before

        saved = wb.save(tmp_path / "punch.yaml")
        assert saved["verified"] == "passed"
    finally:
        wb.close()
    assert [s["step"].get("expect") for s in wb.recording.steps() if "punch" in s["step"]] == [
        {"punched": True}, {"punched": False}]
    done = subprocess.run([sys.executable, "-m", "natlab", "run", "--backend", "netns", str(tmp_path / "punch.yaml")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
