"""The workbench without a browser: recording, saving, hole punching, knob rows, layout, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from natlab.explore import knobs, topoview
from natlab.explore.backend import ConfigError, load_topology, policy_of_preset
from natlab.explore.session import Workbench

REPO = Path(__file__).resolve().parents[3]
TOPOLOGIES = REPO / "natlab" / "data" / "topologies"


def natlab_run(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "natlab", "run", "--backend", "memory", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_a_session_saves_as_a_scenario_that_natlab_run_passes(workbench: Workbench, tmp_path: Path) -> None:
    wb = workbench
    wb.set_knob("nat-a", "timeouts.udp", "60")
    wb.probe("udp", "alice", "server:3478", 40000)
    wb.probe("udp", "server", "nat-a:40000", 5555, at="alice:40000")
    wb.probe("icmp", "alice", "server", reply=True)
    wb.probe("tcp", "bob", "server:80", reply=True)
    wb.advance(None, 61)
    wb.check_mappings("nat-a")
    wb.configure("nat-b", "full-cone")
    wb.reboot("nat-b")
    out = wb.save(tmp_path / "s.yaml")
    assert out["verified"] == "passed" and out["steps"] == 9
    doc = yaml.safe_load((tmp_path / "s.yaml").read_text())
    assert doc["seed"] == wb.seed and (tmp_path / doc["topology"]).resolve() == (TOPOLOGIES / "two-homes.yaml").resolve()
    assert doc["steps"][1] == {"udp": {"from": "alice", "to": "server:3478", "sport": 40000},
                               "expect": {"delivered": True, "source": "203.0.113.1:40000"}}
    assert doc["steps"][2]["expect"] == {"delivered": False}
    assert doc["steps"][6] == {"mappings": {"gateway": "nat-a"}, "expect": {"count": 0}}
    done = natlab_run(tmp_path / "s.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_probe_with_any_source_port_records_the_port_it_used(workbench: Workbench, tmp_path: Path) -> None:
    first = workbench.probe("udp", "alice", "server:3478")["result"]["sport"]
    assert workbench.recording.steps()[0]["step"]["udp"]["sport"] == first != 0


def test_a_recording_that_would_not_replay_is_not_written(workbench: Workbench, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing recorded"):
        workbench.save(tmp_path / "empty.yaml")
    assert not (tmp_path / "empty.yaml").exists()
    with pytest.raises(ConfigError, match="no such folder"):
        workbench.probe("udp", "alice", "server:3478") and workbench.save(tmp_path / "nope" / "s.yaml")


def test_save_keeps_an_existing_file_when_the_new_one_is_refused(workbench: Workbench, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from natlab.explore import backend

    target = tmp_path / "keep.yaml"
    target.write_text("old: content\n")
    workbench.probe("udp", "alice", "server:3478")

    def refuse(path: Any) -> None:
        raise ConfigError("refused for the test")

    monkeypatch.setattr(backend, "load_scenario", refuse)
    with pytest.raises(ConfigError):
        workbench.save(target)
    assert target.read_text() == "old: content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.yaml"]


PUNCH = [  # RFC 4787's prediction, as natlab.matrix states it
    ("full-cone", "symmetric", True),
    ("restricted-cone", "symmetric", True),
    ("port-restricted-cone", "symmetric", False),
    ("symmetric", "symmetric", False),
    ("port-restricted-cone", "port-restricted-cone", True),
]


@pytest.mark.parametrize("a,b,ok", PUNCH)
def test_hole_punch_outcome_per_preset_pair(workbench: Workbench, tmp_path: Path, a: str, b: str, ok: bool) -> None:
    workbench.configure("nat-a", a)
    workbench.configure("nat-b", b)
    out = workbench.punch("alice", "bob", "server")
    assert out["ok"] is ok
    assert out["lanes"] == ["alice", "nat-a", "server", "nat-b", "bob"]
    assert out["messages"][0]["from"] == "alice" and out["messages"][0]["end"] == "server"
    if not ok:
        assert any(m["outcome"] == "dropped" and m["reason"] for m in out["messages"])
    saved = workbench.save(tmp_path / "punch.yaml")
    assert saved["verified"] == "passed"


def test_knob_rows_carry_requirement_and_allowed_values() -> None:
    rows = {r["knob"]: r for r in knobs.knob_rows(policy_of_preset("symmetric"))}
    assert rows["filtering"]["choices"] == ["endpoint-independent", "address-dependent", "address-and-port-dependent"]
    assert rows["filtering"]["requirement"].startswith("REQ-8")
    assert rows["timeouts.udp"]["text"] == "number s > 0" and "REQ-5" in rows["timeouts.udp"]["requirement"]
    assert rows["icmp.echo"]["choices"] == ["true", "false"]
    assert "null" in rows["limits.max_mappings"]["text"]
    assert rows["mapping"]["value"] == "address-and-port-dependent" != rows["mapping"]["default"]


@pytest.mark.parametrize("name", sorted(p.stem for p in TOPOLOGIES.glob("*.yaml")))
def test_every_shipped_topology_lays_out_without_overlaps(name: str) -> None:
    view = topoview.layout(load_topology(TOPOLOGIES / f"{name}.yaml"), {})
    nodes = view["nodes"]
    assert {n["name"] for n in nodes} >= {h for h in (n["name"] for n in nodes)}
    for i, a in enumerate(nodes):
        assert 0 <= a["x"] <= view["width"] and 0 <= a["y"] <= view["height"]
        for b in nodes[i + 1:]:
            assert abs(a["x"] - b["x"]) >= 150 or abs(a["y"] - b["y"]) >= 60, (a["name"], b["name"])


@pytest.mark.parametrize("args,message", [
    (["--lab", "home"], "no lab named 'home' is up"),
    (["--lab", "home", "--backend", "netns"], "--lab drives the lab on the backend it was made with"),
    (["--lab", "home", "--seed", "3"], "a running lab keeps its seed"),
    (["--backend", "dokcer", "topologies/two-homes.yaml"], "did you mean 'docker'"),
    ([], "name a topology file to explore, or a running lab"),
])
def test_cli_bad_arguments_are_one_clear_line(args: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "natlab", "explore", "--no-browser", *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "NATLAB_RUN_DIR": str(tmp_path)})  # no lab is up there
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.netns
def test_a_session_on_a_netns_lab_saves_a_scenario_that_passes_there(tmp_path: Path) -> None:
    from natlab.explore.backend import unavailable

    reason = unavailable("netns")
    if reason:
        pytest.skip(reason)
    wb = Workbench(TOPOLOGIES / "two-homes.yaml", backend_name="netns")
    try:
        assert wb.topology()["backend"] == "netns"
        wb.set_knob("nat-a", "timeouts.udp", "60")
        out = wb.probe("udp", "alice", "server:3478", 40000)
        assert out["result"]["seen"] == "203.0.113.1:40000"
        assert any(e["kind"] == "mapping-created" for e in out["result"]["events"])
        assert wb.probe("udp", "server", "nat-a:40000", 5555, at="alice:40000")["result"]["delivered"] is False
        wb.advance("nat-a", 61)
        assert wb.state()["gateways"]["nat-a"]["mappings"] == []
        saved = wb.save(tmp_path / "netns.yaml")
        assert saved["verified"] == "passed"
        assert yaml.safe_load((tmp_path / "netns.yaml").read_text())["backends"] == ["netns"]
    finally:
        wb.close()
