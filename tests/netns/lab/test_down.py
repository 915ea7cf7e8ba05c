"""``down`` removes everything, whatever state the lab was left in."""

from __future__ import annotations

import os
import signal

import pytest
from typer.testing import CliRunner

import natlab.cli  # noqa: F401  (registers the commands)
from natlab.cli.app import app
from natlab.lab import down, down_all, up
from natlab.realisers.netns import namespaces as netns
from natlab.realisers.netns import procs
from natlab.realisers.netns import build as runner
from natlab.realisers.netns.state import LabState, list_labs

from labkit import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.any_datapath]

ONE = {"networks": {"lan": {"subnet": "192.0.2.0/24"}},
       "hosts": {"a": {"network": "lan", "command": "sleep 600"}, "b": {"network": "lan"}}}


def _lab_gone(name: str, pids: list[int]) -> None:
    assert netns.lab_namespaces(name) == []
    assert not LabState.new(name).path.parent.exists()
    assert [p for p in pids if procs.start_time(p) is not None] == []


@pytest.mark.usefixtures("needs_daemon")
def test_down_after_kill9_and_a_half_written_state(topology, lab_name) -> None:
    lab = up(topology("two-homes"))
    pids = [gw["pid"] for gw in lab.state.gateways.values()]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    text = lab.state.path.read_text()
    lab.state.path.write_text(text[: len(text) // 2])
    down(lab_name)
    _lab_gone(lab_name, pids)
    down(lab_name)  # again: nothing left, still fine


@pytest.mark.usefixtures("needs_daemon")
def test_status_shows_a_killed_gateway_as_dead(topology, lab_name) -> None:
    lab = up(topology("two-homes"))
    pid = lab.state.gateways["nat-a"]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not runner.gateway_alive(lab.state.gateways["nat-a"]))
    result = CliRunner().invoke(app, ["status", lab_name], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "DEAD" in result.output
    assert str(lab.state.gateways["nat-b"]["pid"]) in result.output
    lab.down()


def test_down_of_a_half_built_lab(stub, topology, lab_name) -> None:
    topo = topology(ONE)
    state = runner.plan_state(topo)
    state.save()
    netns.create(netns.switch_ns(lab_name), {})
    netns.create(netns.ns_name(lab_name, "a"), {})  # then "crashed"
    down(lab_name)
    _lab_gone(lab_name, [])


def test_down_sweeps_tagged_namespaces_missing_from_state(stub, topology, lab_name) -> None:
    lab = up(topology(ONE))
    pids = netns.pids_in(lab.netns("a"))
    lab.state.path.unlink()  # state lost entirely
    down(lab_name)
    _lab_gone(lab_name, pids)


def test_down_leaves_a_lab_whose_name_extends_ours_alone(stub, topology, lab_name) -> None:
    other = f"{lab_name}-b"
    up(topology(ONE))
    import dataclasses
    up(dataclasses.replace(topology(ONE), name=other))
    try:
        down(lab_name)
        assert netns.lab_namespaces(lab_name, [other]) == []
        assert len(netns.lab_namespaces(other)) == 3
    finally:
        down(other)


def test_cli_exec_passes_the_exit_code_and_down_all(stub, topology, lab_name) -> None:
    up(topology(ONE))
    runner_ = CliRunner()
    result = runner_.invoke(app, ["exec", "--lab", lab_name, "b", "--", "sh", "-c", "exit 5"])
    assert result.exit_code == 5
    result = runner_.invoke(app, ["hosts", "--lab", lab_name])
    assert result.output.split() == ["a", "192.0.2.1", "b", "192.0.2.2"]
    result = runner_.invoke(app, ["exec", "--lab", lab_name, "nobody", "--", "true"])
    assert result.exit_code == 1 and "no node named 'nobody'" in str(result.exception)
    others = (set(list_labs()) | netns.all_tagged_labs()) - {lab_name}
    if others:  # never take down labs this test did not make (a user's, another run's)
        down(lab_name)
        pytest.skip(f"down --all not exercised: other labs are up ({', '.join(sorted(others))})")
    assert lab_name in down_all()
    _lab_gone(lab_name, [])
