"""Scenarios on real namespace labs: a bad file creates nothing; spawned output reaches the report."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from natlab.scenario import load, render_text, run_scenario

TWO_HOMES = Path(__file__).resolve().parents[2] / "topologies" / "two-homes.yaml"
pytestmark = [pytest.mark.netns, pytest.mark.any_datapath]


def namespaces() -> set[str]:
    """The two-homes labs' namespaces (scenario labs are named two-homes, two-homes-2, ...);
    other labs that come and go meanwhile are not this test's business."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip().startswith("natlab-two-homes")}


def test_typo_in_a_scenario_fails_before_any_namespace_exists(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text(f"topology: {TWO_HOMES}\nsteps:\n  - udp: {{from: alice, to: server:3478}}\n"
                   "  - mapings: {gateway: nat-a}\n")
    before = namespaces()
    done = subprocess.run(["natlab", "run", str(bad)], capture_output=True, text=True)
    assert done.returncode == 1
    assert f"{bad}:4" in done.stderr and "did you mean 'mappings'" in done.stderr
    assert namespaces() == before


def test_spawned_output_and_a_failing_run_step_reach_the_report(tmp_path: Path) -> None:
    path = tmp_path / "prog.yaml"
    path.write_text(f"""\
topology: {TWO_HOMES}
steps:
  - spawn: {{host: server, name: echo, command: "echo serving on ${{server}}; sleep 30", ready: serving}}
  - run: {{host: alice, command: "echo from alice; exit 3"}}
    expect: {{exit: 0, stdout: "from alice"}}
""")
    before = namespaces()
    report = run_scenario(load(path), "netns")
    assert report.status == "failed", render_text(report)
    step = report.failed_step
    assert step.index == 1 and step.expected["exit"] == 0 and step.seen["exit"] == 3
    assert "serving on 203.0.113.100" in report.spawned["echo"]["stdout"]
    assert step.output == {"stdout": "from alice", "stderr": ""}
    assert namespaces() == before


def test_a_failing_run_step_shows_the_tail_of_its_stdout_and_stderr(tmp_path: Path) -> None:
    path = tmp_path / "tail.yaml"
    path.write_text(f"""\
topology: {TWO_HOMES}
steps:
  - run: {{host: alice, command: "seq 1 30; echo cannot reach server >&2; exit 1"}}
""")
    report = run_scenario(load(path), "netns")
    assert report.status == "failed", render_text(report)
    step = report.failed_step
    assert step.seen["exit"] == 1
    assert step.output == {"stdout": "\n".join(str(n) for n in range(11, 31)), "stderr": "cannot reach server"}
    text = render_text(report).splitlines()
    assert "  stdout (last 20 lines):" in text and "    | 30" in text and "    | 10" not in text
    assert "  stderr (last 1 line):" in text and "    | cannot reach server" in text
