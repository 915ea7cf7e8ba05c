"""Scenario files are checked before any lab exists: every mistake names file, line and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from natlab.errors import ConfigError
from natlab.scenario import load
from natlab.scenario.load import knob_assignments, undot

ROOT = Path(__file__).resolve().parents[2]
TWO_HOMES = ROOT / "topologies" / "two-homes.yaml"
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))


def write(tmp_path: Path, steps: str, head: str = "") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"topology: {TWO_HOMES}\n{head}steps:\n{steps}")
    return path


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_scenario_validates(path: Path) -> None:
    scn = load(path)
    assert scn.steps and scn.description, f"{path.name} needs steps and a description"


def test_typo_in_step_action_names_file_line_and_suggests_the_action(tmp_path: Path) -> None:
    path = write(tmp_path, "  - udp: {from: alice, to: server:3478}\n  - advanse: {seconds: 3}\n")
    err = error_of(path)
    assert (err.file, err.line, err.key) == (str(path), 4, "steps[1].advanse")
    assert "did you mean 'advance'" in err.message


def test_typo_inside_an_action_is_reported_before_missing_keys(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - udp: {from: alice, too: server:3478}\n"))
    assert err.line == 3 and err.key == "steps[0].udp.too"
    assert "did you mean 'to'" in err.message


def test_typo_in_expect_lists_the_known_expectations(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - udp: {from: alice, to: server:3478}\n    expect: {deliverd: true}\n"))
    assert err.key == "steps[0].expect.deliverd" and "delivered" in err.message


def test_step_with_two_actions_is_refused(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - {reboot: nat-a, advance: {seconds: 1}}\n"))
    assert "exactly one action" in err.message and err.line == 3


def test_unknown_host_names_the_hosts_there_are(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - udp: {from: carol, to: server:3478}\n"))
    assert "no host named 'carol'" in err.message and "alice" in err.message


def test_unknown_gateway_in_a_mapping_check(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - mappings: {gateway: nat-z}\n"))
    assert "no gateway named 'nat-z'" in err.message


def test_variable_used_before_any_step_saved_it(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - udp: {from: server, to: '${ext}', at: 'alice:1'}\n"))
    assert "${ext} is used before" in err.message and err.line == 3


def test_node_names_are_variables_holding_their_address(tmp_path: Path) -> None:
    scn = load(write(tmp_path, "  - udp: {from: alice, to: '${server}:3478'}\n"))
    assert scn.steps[0].spec.to == "${server}:3478"


def test_bad_knob_in_set_is_located_in_the_scenario(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - set: {gateway: nat-a, knobs: {filtering: sideways}}\n"))
    assert err.file == str(tmp_path / "s.yaml") and err.line is not None
    assert "sideways" in err.message


def test_gateway_override_for_a_missing_gateway(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - reboot: nat-a\n", head="gateways:\n  nat-q: {behaviour: symmetric}\n"))
    assert "no such gateway" in err.message and err.line == 3


def test_icmp_probe_takes_no_port(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - icmp: {from: alice, to: server:7}\n"))
    assert "ICMP echo goes to an address" in err.message


def test_udp_refusal_needs_the_sender_to_wait_for_an_answer(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - udp: {from: alice, to: server:9, at: nobody}\n    expect: {refused: true}\n"))
    assert "reply: true" in err.message


def test_expect_on_an_action_that_takes_none(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - reboot: nat-a\n    expect: {count: 1}\n"))
    assert "'reboot' takes no expect" in err.message


def test_seed_and_gateway_changes_reach_the_topology(tmp_path: Path) -> None:
    scn = load(write(tmp_path, "  - reboot: nat-a\n",
                     head="seed: 9\ngateways:\n  nat-a: {behaviour: symmetric, overrides: {timeouts.udp: 30}}\n"))
    gw = scn.topology.gateways[0]
    assert scn.seed == 9 and gw.behaviour == "symmetric" and gw.overrides == {"timeouts": {"udp": 30}}


def test_inline_topology_errors_point_into_the_scenario(tmp_path: Path) -> None:
    path = tmp_path / "inline.yaml"
    path.write_text("topology:\n  name: t\n  networks: {wan: {subnet: 203.0.113.0/24}}\n"
                    "  hosts: {a: {network: lan}}\nsteps:\n  - wait: {seconds: 1}\n")
    err = error_of(path)
    assert err.file == str(path) and err.line == 4


def test_knobs_become_control_socket_assignments() -> None:
    assert undot({"timeouts.udp": 30, "icmp": {"echo": False}}) == {"timeouts": {"udp": 30}, "icmp": {"echo": False}}
    assert knob_assignments({"timeouts.udp": 30, "filtering": "address-dependent"}) == [
        "timeouts.udp=30", "filtering=address-dependent"]


def test_natlab_validate_reports_a_scenario_typo_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "  - rebot: nat-a\n")
    done = subprocess.run([sys.executable, "-m", "natlab", "validate", str(path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert f"{path}:3" in done.stderr and "did you mean 'reboot'" in done.stderr
