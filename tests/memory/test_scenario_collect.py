"""``pytest scenarios/`` collects scenario files as test items (tested with pytester)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TWO_HOMES = Path(__file__).resolve().parents[2] / "topologies" / "two-homes.yaml"
GOOD = f"""\
topology: {TWO_HOMES}
steps:
  - udp: {{from: alice, sport: 40000, to: server:3478}}
    expect: {{source: "nat-a:40000"}}
"""
FILTERED = f"""\
topology: {TWO_HOMES}
steps:
  - udp: {{from: alice, sport: 40000, to: server:3478}}
    save: ext
  - udp: {{from: server, sport: 5555, to: "${{ext}}", at: "alice:40000"}}
"""
RUNS_A_PROGRAM = f"""\
topology: {TWO_HOMES}
steps:
  - run: {{host: alice, command: "true"}}
"""


def test_each_scenario_is_one_item_per_backend(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", good=GOOD)
    pytester.makefile(".yaml", other="just: some yaml\n")
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["good.yaml::good[[]netns[]]", "good.yaml::good[[]memory[]]"])
    assert "other.yaml" not in result.stdout.str()


def test_memory_backend_runs_scenarios_without_a_lab(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", good=GOOD)
    result = pytester.runpytest("--natlab-backend", "memory", "-v")
    result.assert_outcomes(passed=1)


def test_failing_scenario_shows_the_report(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", filtered=FILTERED)
    result = pytester.runpytest("--natlab-backend", "memory")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*filtered.yaml:5: expected delivery, but it was not delivered (filtered)*",
                                 "*mappings on nat-a*"])


def test_program_steps_skip_in_memory_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", prog=RUNS_A_PROGRAM)
    result = pytester.runpytest("--natlab-backend", "memory", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*the memory backend cannot run programs*"])


def test_typo_is_a_collection_error_with_file_and_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", typo=GOOD.replace("expect:", "expct:"))
    result = pytester.runpytest("--natlab-backend", "memory")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*natlab scenario invalid: *typo.yaml:4*unknown step key*expct*did you mean 'expect'*"])


NOT_ROOT = "import os\nos.geteuid = lambda: 65534\n"


def test_as_non_root_netns_items_skip_with_the_reason_instead_of_an_internal_error(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest(NOT_ROOT)
    pytester.makefile(".yaml", good=GOOD)
    result = pytester.runpytest_subprocess("-rs")
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert result.ret == 0
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] good.yaml: netns tier skipped: needs root (natlab creates "
                                 "network namespaces, veths and NFQUEUE rules); try --natlab-backend memory"])


def test_a_program_step_skips_in_memory_at_the_scenario_file(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", prog=RUNS_A_PROGRAM)
    result = pytester.runpytest("--natlab-backend", "memory", "-rs")
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] prog.yaml: step 1 run (line 3) runs a program*"])
