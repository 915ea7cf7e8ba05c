"""Running scenarios on the in-memory backend: outcomes, failure reports, skips, report files, CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from natlab.cli.app import app
from natlab.scenario import load, render_text, run_scenario, write_json, write_junit

ROOT = Path(__file__).resolve().parents[2]
TWO_HOMES = ROOT / "topologies" / "two-homes.yaml"

PUNCH_FILTERED = """\
  - udp: {from: alice, sport: 40000, to: server:3478}
    save: ext
  - name: server answers from another port
    udp: {from: server, sport: 5555, to: "${ext}", at: "alice:40000"}
    expect: {delivered: true}
"""


def scenario(tmp_path: Path, steps: str, head: str = "", name: str = "s") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"topology: {TWO_HOMES}\ndescription: test\n{head}steps:\n{steps}")
    return path


def test_passing_scenario_reports_every_step(tmp_path: Path) -> None:
    path = scenario(tmp_path, """\
  - udp: {from: alice, sport: 40000, to: server:3478, reply: true}
    expect: {source: "nat-a:40000", replied: true}
    save: ext
  - udp: {from: server, sport: 3478, to: "${ext}", at: "alice:40000"}
  - mappings: {gateway: nat-a, internal: "alice:40000"}
    expect: {count: 1, external_port: preserved, external: "${ext}"}
""")
    report = run_scenario(load(path), "memory")
    assert report.status == "passed", render_text(report)
    assert [s.status for s in report.steps] == ["passed"] * 3


def test_apdf_failure_shows_step_expected_seen_mappings_and_events(tmp_path: Path) -> None:
    report = run_scenario(load(scenario(tmp_path, PUNCH_FILTERED)), "memory")
    assert report.status == "failed"
    step = report.failed_step
    assert step.index == 1 and step.line == 6
    assert step.expected["delivered"] is True and step.seen["delivered"] is False
    assert "filtered" in step.message
    assert report.mappings["nat-a"][0]["internal"] == "192.168.1.2:40000"
    assert any(e["kind"] == "filtered" for e in report.events["nat-a"])
    text = render_text(report)
    assert f"{path_of(report)}:6" in text and "mappings on nat-a" in text and "filtered" in text


def path_of(report) -> str:
    return report.file


def test_later_steps_do_not_run_after_a_failure(tmp_path: Path) -> None:
    report = run_scenario(load(scenario(tmp_path, PUNCH_FILTERED + "  - reboot: nat-a\n")), "memory")
    assert len(report.steps) == 2


def test_memory_skips_a_scenario_that_runs_programs_and_says_why(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - run: {host: alice, command: 'true'}\n")
    report = run_scenario(load(path), "memory")
    assert report.status == "skipped"
    assert "step 1 run (line 4) runs a program" in report.reason and "--backend netns" in report.reason


def test_backends_key_limits_where_a_scenario_runs(tmp_path: Path) -> None:
    report = run_scenario(load(scenario(tmp_path, "  - reboot: nat-a\n", head="backends: [netns]\n")), "memory")
    assert report.status == "skipped" and "only on netns" in report.reason


def test_advance_expires_a_mapping_and_wait_polls_the_manual_clock(tmp_path: Path) -> None:
    path = scenario(tmp_path, """\
  - udp: {from: alice, sport: 40000, to: server:3478}
  - advance: {gateway: nat-b, seconds: 1000}
  - mappings: {gateway: nat-a}
    expect: {count: 1}
  - wait: {mappings: {gateway: nat-a}, timeout: 400}
    expect: {exists: false}
""")
    report = run_scenario(load(path), "memory")
    assert report.status == "passed", render_text(report)
    assert "condition held after" in report.steps[-1].summary


def test_set_and_configure_change_filtering_live(tmp_path: Path) -> None:
    admitted = PUNCH_FILTERED.replace("  - name: server", "  - set: {gateway: nat-a, knobs: {filtering: endpoint-independent}}\n  - name: server")
    assert run_scenario(load(scenario(tmp_path, admitted, name="a")), "memory").status == "passed"
    configured = PUNCH_FILTERED.replace("  - name: server", "  - configure: {gateway: nat-a, behaviour: full-cone}\n"
                                        "  - udp: {from: alice, sport: 40000, to: server:3478}\n  - name: server")
    assert run_scenario(load(scenario(tmp_path, configured, name="b")), "memory").status == "passed"


def test_set_pool_changes_the_source_the_server_sees(tmp_path: Path) -> None:
    path = scenario(tmp_path, """\
  - set_pool: {gateway: nat-a, addresses: [203.0.113.77]}
  - udp: {from: alice, sport: 40000, to: server:3478}
    expect: {source: "203.0.113.77:*"}
""")
    report = run_scenario(load(path), "memory")
    assert report.status == "passed", render_text(report)


def test_json_and_junit_reports_hold_every_scenario(tmp_path: Path) -> None:
    reports = [run_scenario(load(scenario(tmp_path, PUNCH_FILTERED, name="bad")), "memory"),
               run_scenario(load(scenario(tmp_path, "  - reboot: nat-a\n", name="good")), "memory")]
    write_json(reports, tmp_path / "r.json")
    write_junit(reports, tmp_path / "r.xml")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["summary"] == {"passed": 1, "failed": 1, "skipped": 0, "error": 0}
    assert data["scenarios"][0]["steps"][1]["expected"] == {"delivered": True}
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = suite.find("testcase[@name='bad']/failure")
    assert failure is not None and "line 6" in failure.get("message")


def test_cli_run_exits_nonzero_on_failure_and_writes_reports(tmp_path: Path) -> None:
    bad, good = scenario(tmp_path, PUNCH_FILTERED, name="bad"), scenario(tmp_path, "  - reboot: nat-a\n", name="good")
    runner = CliRunner()
    ok = runner.invoke(app, ["run", "--backend", "memory", str(good)])
    assert ok.exit_code == 0 and "PASSED" in ok.output
    res = runner.invoke(app, ["run", "--backend", "memory", "--junit", str(tmp_path / "j.xml"),
                              "--json", str(tmp_path / "j.json"), str(bad), str(good)])
    assert res.exit_code == 1 and "FAILED" in res.output and "1 passed, 1 failed" in res.output
    assert (tmp_path / "j.xml").exists() and (tmp_path / "j.json").exists()


def test_cli_refuses_a_typo_before_running_anything(tmp_path: Path) -> None:
    good = scenario(tmp_path, "  - reboot: nat-a\n", name="good")
    typo = scenario(tmp_path, "  - reboots: nat-a\n", name="typo")
    res = CliRunner().invoke(app, ["run", "--backend", "memory", str(good), str(typo)])
    assert res.exit_code != 0 and "PASSED" not in res.output


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_pass_or_skip_clearly_in_memory(path: Path) -> None:
    report = run_scenario(load(path), "memory")
    assert report.status in ("passed", "skipped"), render_text(report)
    if report.status == "skipped":
        assert "netns" in report.reason


RUNS_A_PROGRAM = "  - run: {host: alice, command: 'true'}\n"


def test_cli_run_where_every_scenario_skipped_exits_4_and_says_so_on_stderr(tmp_path: Path) -> None:
    prog = scenario(tmp_path, RUNS_A_PROGRAM, name="prog")
    res = CliRunner().invoke(app, ["run", "--backend", "memory", str(prog)])
    assert res.exit_code == 4
    assert "NOTHING RAN: the 1 scenario run was skipped: the memory backend cannot run programs" in res.stderr
    assert "1 skipped because the memory backend cannot run programs" in res.stdout


def test_cli_run_as_non_root_exits_4_and_suggests_the_memory_backend(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 65534)
    good = scenario(tmp_path, "  - reboot: nat-a\n", name="good")
    res = CliRunner().invoke(app, ["run", str(good)])
    assert res.exit_code == 4
    assert "NOTHING RAN" in res.stderr and "netns backend unavailable: needs root" in res.stderr
    assert "--backend memory" in res.stderr
    assert "PASSED" not in res.stdout


def test_cli_summary_counts_skips_grouped_by_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 65534)
    two = "backends: [netns, memory]\n"
    files = [scenario(tmp_path, RUNS_A_PROGRAM, head=two, name=f"prog{i}") for i in range(2)]
    files.append(scenario(tmp_path, "  - reboot: nat-a\n", head=two, name="good"))
    res = CliRunner().invoke(app, ["run", "--backend", "all", *map(str, files)])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1] == (
        "1 passed, 5 skipped: 3 because netns backend unavailable: needs root (natlab creates network "
        "namespaces, veths and NFQUEUE rules); 2 because the memory backend cannot run programs "
        "(run it with --backend netns)")
    assert "NOTHING RAN" not in res.stderr


def test_cli_run_help_documents_the_exit_statuses() -> None:
    res = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert "0  all that ran passed" in res.output and "1  a step failed" in res.output
    assert "4  nothing ran" in res.output
