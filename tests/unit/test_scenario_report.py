"""A failing ``run`` step's report shows the tail of the command's output, in text, JSON and JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from natlab.scenario import ScenarioReport, StepReport, render_text, write_json, write_junit
from natlab.scenario.checks import tail

STDOUT = "".join(f"out line {n}\n" for n in range(1, 31))
STDERR = "boom: no such file\n"


def failed_run_report() -> ScenarioReport:
    step = StepReport(index=0, line=4, action="run", label="step 1 run (line 4)",
                      summary="on alice: ./client -> exit 1", status="failed",
                      expected={"exit": 0}, seen={"exit": 1}, message="exit status 1, expected 0",
                      output={"stdout": tail(STDOUT), "stderr": tail(STDERR)})
    return ScenarioReport("client", "client.yaml", "netns", 7, status="failed",
                          reason="step 1 run (line 4): exit status 1, expected 0", steps=[step])


def test_tail_keeps_the_last_20_lines_and_cuts_long_ones() -> None:
    assert tail(STDOUT).splitlines() == [f"out line {n}" for n in range(11, 31)]
    assert tail("x" * 1000) == "x" * 240 + "..."
    assert tail("one\n\n\n") == "one" and tail("") == ""


def test_text_report_shows_both_streams_under_the_failed_step() -> None:
    text = render_text(failed_run_report())
    lines = text.splitlines()
    assert "    exit: expected 0, seen 1" in lines
    assert "  stdout (last 20 lines):" in lines and "    | out line 30" in lines
    assert "    | out line 11" in lines and "    | out line 10" not in lines
    assert "  stderr (last 1 line):" in lines and "    | boom: no such file" in lines


def test_empty_stream_says_so() -> None:
    report = failed_run_report()
    report.steps[0].output["stderr"] = ""
    assert "  stderr: (empty)" in render_text(report).splitlines()


def test_json_and_junit_carry_the_output_tail(tmp_path: Path) -> None:
    write_json([failed_run_report()], tmp_path / "r.json")
    write_junit([failed_run_report()], tmp_path / "r.xml")
    step = json.loads((tmp_path / "r.json").read_text())["scenarios"][0]["steps"][0]
    assert step["output"]["stderr"] == "boom: no such file"
    assert step["output"]["stdout"].endswith("out line 30")
    case = ET.parse(tmp_path / "r.xml").getroot().find("testsuite/testcase")
    failure, system_out = case.find("failure"), case.find("system-out")
    assert "| out line 30" in failure.text and "| boom: no such file" in failure.text
    assert "| boom: no such file" in system_out.text
