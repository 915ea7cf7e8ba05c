"""The CLI on real labs: several labs up at once, one file up twice, live policy in status.

State files live in a private ``NATLAB_RUN_DIR`` so that other labs on the machine
(a user's, another test's) are neither seen nor touched; lab names are random.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest
from typer.testing import CliRunner

import natlab.cli  # noqa: F401  (registers the commands)
from natlab.cli.app import app
from natlab.errors import LabNotFound
from natlab.realisers.netns import build as runner

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"
pytestmark = [pytest.mark.netns, pytest.mark.any_datapath]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def labs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """``labs("two-homes")`` brings that file up under a fresh name (via ``up --name``)."""
    run_dir = Path(tempfile.mkdtemp(prefix="nlcli"))
    monkeypatch.setenv("NATLAB_RUN_DIR", str(run_dir))
    made: list[str] = []

    def make(topology: str) -> str:
        name = f"t{secrets.token_hex(3)}"
        made.append(name)
        result = invoke("up", "-q", "--name", name, str(TOPOLOGIES / f"{topology}.yaml"))
        assert result.exit_code == 0, result.output or result.exception
        return name

    yield make
    for name in made:
        runner.down(name)
    shutil.rmtree(run_dir, ignore_errors=True)


def in_node(ns: str) -> str:
    return f'test "$(ip netns identify)" = {ns}'


def test_exec_and_gateway_commands_find_the_one_lab_with_that_name(labs, needs_daemon):
    a = labs("two-homes")
    b = labs("one-home")
    assert invoke("exec", "bob", "--", "sh", "-c", in_node(f"natlab-{a}-bob")).exit_code == 0
    assert invoke("exec", "nat", "--", "sh", "-c", in_node(f"natlab-{b}-nat")).exit_code == 0
    assert invoke("mappings", "nat-a", "--json").exit_code == 0
    ambiguous = invoke("exec", "alice", "--", "true")
    assert isinstance(ambiguous.exception, LabNotFound)
    first, second = sorted((a, b))
    assert f"--lab {first} or --lab {second}" in ambiguous.exception.message
    assert invoke("exec", "--lab", b, "alice", "--", "sh", "-c", in_node(f"natlab-{b}-alice")).exit_code == 0


def test_one_file_up_twice_makes_two_separate_labs(labs, stub):
    first, second = labs("one-home"), labs("one-home")
    data = {lab["name"]: lab for lab in json.loads(invoke("status", "--json").output)}
    assert set(data) == {first, second}
    for name in (first, second):
        assert invoke("exec", "-l", name, "alice", "--", "sh", "-c", in_node(f"natlab-{name}-alice")).exit_code == 0
        assert invoke("exec", "-l", name, "alice", "--", "ping", "-c1", "-W2", "192.168.1.1").exit_code == 0
    again = invoke("up", "-q", "--name", first, str(TOPOLOGIES / "one-home.yaml"))
    assert "already up" in str(again.exception)


def test_status_shows_the_preset_configure_switched_to(labs, needs_daemon):
    name = labs("one-home")
    result = invoke("configure", "nat", "symmetric", "timeouts.udp=30")
    assert result.exit_code == 0, result.output or result.exception
    assert result.output.splitlines()[0].startswith("nat: symmetric (APDM/APDF), mappings flushed")
    (lab,) = json.loads(invoke("status", name, "--json").output)
    live = lab["gateways"]["nat"]["live"]
    assert (live["preset"], live["class"], live["changed"]) == ("symmetric", "APDM/APDF", {"timeouts.udp": 30})
    row = next(line for line in invoke("status").output.splitlines() if line.startswith("│ nat "))
    assert "symmetric" in row and "(was rfc-recommended)" in row and "timeouts.udp=30" in row


def test_down_of_a_typo_keeps_the_lab_and_says_did_you_mean(labs, stub):
    name = labs("one-home")
    result = invoke("down", name + "x")
    assert isinstance(result.exception, LabNotFound)
    assert f"did you mean '{name}'?" in result.exception.message
    assert invoke("status", "--lab", name, "--json").exit_code == 0
    assert invoke("down", "--lab", name).exit_code == 0
