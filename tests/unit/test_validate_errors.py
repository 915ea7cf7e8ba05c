"""Every mistake in a file is reported in one run, in line order, with file:line, key and a hint."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import natlab.cli  # noqa: F401  registers every command
from natlab.cli.app import app
from natlab.errors import ConfigError, ConfigErrors, TopologyError, errors_of, report
from natlab.behaviours.overrides import undot
from natlab.behaviours.presets import apply_overrides, load_preset, resolve
from natlab.scenario import load as load_scenario
from natlab.topology import load as load_topology
from natlab.validate import validate_file

ROOT = Path(__file__).resolve().parents[2]
TWO_HOMES = ROOT / "topologies" / "two-homes.yaml"

SEVEN_MISTAKES = """
    name: seven
    seeed: 3
    networks:
      wan: {subnet: 203.0.113.0/24}
      home: {subnet: 192.168.1.0/24}
    gateways:
      nat-a:
        behaviour: symmetrc
        inside: hom
        outside: wan
        overrides:
          timeouts.udpp: 30
    hosts:
      alice: {network: home, adress: 192.168.1.5}
      bob: {netwrk: home}
      server: {network: wann, address: 203.0.113.100}
"""


def write(tmp_path: Path, text: str, name: str = "topo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def errors_in(path: Path, loader=validate_file) -> tuple[ConfigError, ...]:
    with pytest.raises(ConfigError) as info:
        loader(path)
    return errors_of(info.value)


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


# --- topologies --------------------------------------------------------------------

def test_validate_reports_every_error_in_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, SEVEN_MISTAKES)
    errors = errors_in(path)
    assert [(e.line, e.key) for e in errors] == [
        (2, "seeed"),
        (8, "gateways.nat-a.behaviour"),
        (9, "gateways.nat-a.inside"),
        (12, "gateways.nat-a.overrides.timeouts.udpp"),
        (14, "hosts.alice.adress"),
        (15, "hosts.bob.netwrk"),
        (16, "hosts.server.network"),
    ]
    assert all(e.file == str(path) for e in errors)


@pytest.mark.parametrize("line, suggestion", [
    (2, "did you mean 'seed'"),
    (8, "did you mean 'symmetric'"),
    (9, "did you mean 'home'"),
    (12, "did you mean 'udp'"),
    (14, "did you mean 'address'"),
    (15, "did you mean 'network'"),
    (16, "did you mean 'wan'"),
])
def test_misspelt_key_network_preset_or_knob_gets_did_you_mean(tmp_path, line, suggestion) -> None:
    by_line = {e.line: e for e in errors_in(write(tmp_path, SEVEN_MISTAKES))}
    assert suggestion in by_line[line].message


def test_aggregate_keeps_the_first_errors_place_and_stays_a_topology_error(tmp_path) -> None:
    with pytest.raises(TopologyError) as info:
        load_topology(write(tmp_path, SEVEN_MISTAKES))
    err = info.value
    assert isinstance(err, ConfigErrors) and len(err.errors) == 7
    assert (err.line, err.key) == (2, "seeed")
    assert err.message.splitlines() == [e.message for e in err.errors]


def test_a_typo_of_a_required_key_is_one_error_not_also_missing(tmp_path) -> None:
    path = write(tmp_path, """
        name: t
        networks: {wan: {subnet: 203.0.113.0/24}}
        hosts: {a: {netwrk: wan}}
    """)
    (err,) = errors_in(path)
    assert err.key == "hosts.a.netwrk" and "did you mean 'network'" in err.message


def test_references_into_a_broken_network_are_not_reported_twice(tmp_path) -> None:
    path = write(tmp_path, """
        name: t
        networks:
          wan: {subnet: 203.0.113.0/24}
          lan: {subnet: not-a-subnet}
        hosts:
          a: {network: lan}
          b: {network: lab}
    """)
    assert [(e.line, e.key) for e in errors_in(path)] == [(4, "networks.lan.subnet"),
                                                         (7, "hosts.b.network")]


def test_address_clashes_and_bad_references_come_together(tmp_path) -> None:
    path = write(tmp_path, """
        name: t
        networks: {wan: {subnet: 203.0.113.0/24}}
        hosts:
          a: {network: wan, address: 203.0.113.5}
          b: {network: wan, address: 203.0.113.5}
          c: {network: wam}
          d: {network: wan, address: 198.51.100.1}
    """)
    errors = errors_in(path)
    assert [e.key for e in errors] == ["hosts.b.address", "hosts.c.network", "hosts.d.address"]
    assert "already used by hosts.a.address" in errors[0].message


def test_duplicate_yaml_keys_are_all_reported(tmp_path) -> None:
    path = write(tmp_path, """
        name: t
        name: u
        networks: {wan: {subnet: 203.0.113.0/24}}
        hosts: {a: {network: wan, network: wan}}
        hosts: {}
    """)
    assert [(e.line, e.key) for e in errors_in(path)] == [(2, "name"), (4, "hosts.a.network"),
                                                         (5, "hosts")]


# --- scenarios ---------------------------------------------------------------------

BAD_SCENARIO = f"""
    topology: {TWO_HOMES}
    gateways:
      nat-c: {{behaviour: symmetric}}
    steps:
      - udp: {{from: alise, to: server:3478}}
      - rebot: nat-a
      - mappings: {{gateway: nat-z}}
      - udp: {{from: alice, to: '${{ext}}', at: 'bob:1'}}
      - set: {{gateway: nat-a, knobs: {{timeouts.udpp: 30}}}}
      - udp: {{from: alice, too: server:1}}
        save: ext
      - udp: {{from: bob, to: '${{exd}}'}}
"""


def test_scenario_with_several_wrong_steps_lists_them_all(tmp_path) -> None:
    path = write(tmp_path, BAD_SCENARIO, "s.yaml")
    errors = errors_in(path, load_scenario)
    assert [(e.line, e.key) for e in errors] == [
        (3, "gateways.nat-c"),
        (5, "steps[0].udp.from"),
        (6, "steps[1].rebot"),
        (7, "steps[2].mappings.gateway"),
        (8, "steps[3]"),
        (9, "steps[4].set.knobs.timeouts.udpp"),
        (10, "steps[5].udp.too"),
        (12, "steps[6]"),
    ]


@pytest.mark.parametrize("line, suggestion", [
    (3, "did you mean 'nat-b'"),
    (5, "did you mean 'alice'"),
    (6, "did you mean 'reboot'"),
    (9, "did you mean 'udp'"),
    (10, "did you mean 'to'"),
    (12, "did you mean 'ext'"),
])
def test_misspelt_host_gateway_action_or_var_in_a_scenario_gets_did_you_mean(
        tmp_path, line, suggestion) -> None:
    by_line = {e.line: e for e in errors_in(write(tmp_path, BAD_SCENARIO, "s.yaml"), load_scenario)}
    assert suggestion in by_line[line].message


def test_a_broken_topology_still_lends_its_names_to_the_steps(tmp_path) -> None:
    topo = write(tmp_path, SEVEN_MISTAKES)
    path = write(tmp_path, f"topology: {topo}\nsteps:\n  - udp: {{from: carol, to: server:1}}\n",
                 "s.yaml")
    errors = errors_in(path, load_scenario)
    assert {e.file for e in errors} == {str(topo), str(path)}
    mine = [e for e in errors if e.file == str(path)]
    assert len(errors) == 8 and len(mine) == 1 and "no host named 'carol'" in mine[0].message


# --- dotted and nested overrides -------------------------------------------------------

GATEWAY = """
    name: t
    networks:
      wan: {{subnet: 203.0.113.0/24}}
      home: {{subnet: 192.168.1.0/24}}
    gateways:
      nat-a:
        behaviour: symmetric
        inside: home
        outside: wan
        overrides: {overrides}
"""


@pytest.mark.parametrize("overrides", [
    "{timeouts.udp: 30, icmp.echo: false}",
    "{timeouts: {udp: 30}, icmp: {echo: false}}",
    "{timeouts.udp: 30, icmp: {echo: false}}",
], ids=["dotted", "nested", "mixed"])
def test_dotted_and_nested_overrides_give_the_same_policy(tmp_path, overrides) -> None:
    topo = load_topology(write(tmp_path, GATEWAY.format(overrides=overrides)))
    gw = topo.gateways[0]
    assert gw.overrides == {"timeouts": {"udp": 30}, "icmp": {"echo": False}}
    policy = resolve(gw.behaviour, gw.overrides).policy
    assert policy.timeouts.udp == 30 and policy.icmp.echo is False


def test_error_in_a_dotted_override_points_at_its_line(tmp_path) -> None:
    path = write(tmp_path, GATEWAY.format(overrides="") + "          filtering: open\n"
                 "          timeouts.udp: -1\n")
    errors = errors_in(path)
    assert [(e.line, e.key) for e in errors] == [
        (11, "gateways.nat-a.overrides.filtering"), (12, "gateways.nat-a.overrides.timeouts.udp")]


def test_the_same_knob_dotted_and_nested_is_an_error_naming_both(tmp_path) -> None:
    path = write(tmp_path, GATEWAY.format(overrides="") + "          timeouts.udp: 30\n"
                 "          timeouts:\n            udp: 40\n")
    (err,) = errors_in(path)
    assert err.line == 13 and "given twice" in err.message
    assert "timeouts: {udp}" in err.message and "'timeouts.udp' on line 11" in err.message


def test_a_section_and_a_knob_inside_it_conflict() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        undot({"timeouts": 5, "timeouts.udp": 30})


def test_scenario_gateway_overrides_accept_dotted_knobs_and_locate_errors(tmp_path) -> None:
    path = write(tmp_path, f"""
        topology: {TWO_HOMES}
        gateways:
          nat-a:
            overrides:
              timeouts.udp: 30
              timeouts.icmpp: 30
        steps:
          - reboot: nat-a
    """, "s.yaml")
    (err,) = errors_in(path, load_scenario)
    assert err.line == 6 and "did you mean 'icmp'" in err.message


def test_preset_policy_may_use_dotted_knobs(tmp_path) -> None:
    path = write(tmp_path, """
        name: dotted
        summary: s
        extends: symmetric
        policy:
          timeouts.udp: 30
          icmp: {echo: false}
    """, "dotted.yaml")
    policy = load_preset(path).policy
    assert policy.timeouts.udp == 30 and policy.icmp.echo is False
    assert apply_overrides(policy, {"timeouts.udp": 60}).timeouts.udp == 60


# --- the command line -----------------------------------------------------------------

def test_cli_validate_prints_a_count_and_one_line_per_error(run, tmp_path) -> None:
    path = write(tmp_path, SEVEN_MISTAKES)
    result = run("validate", str(path))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == f"natlab: 7 errors in {path}:"
    assert [line.split(",")[0] for line in lines[1:]] == [
        f"  {path}:{n}" for n in (2, 8, 9, 12, 14, 15, 16)]


def test_cli_validate_reports_every_file_and_fails_if_any_is_wrong(run, tmp_path) -> None:
    bad = write(tmp_path, SEVEN_MISTAKES)
    scenario = write(tmp_path, BAD_SCENARIO, "s.yaml")
    result = run("validate", str(TWO_HOMES), str(bad), str(scenario))
    assert result.exit_code == 1
    assert "topology 'two-homes' is valid" in result.output
    assert f"natlab: 7 errors in {bad}:" in result.output
    assert f"natlab: 8 errors in {scenario}:" in result.output


def test_one_error_stays_one_line(tmp_path) -> None:
    path = write(tmp_path, "name: t\nnetworks: {wan: {subnet: 203.0.113.0/24}}\n"
                 "hosts: {a: {network: wam}}\n")
    (err,) = errors_in(path)
    assert report(err) == f"natlab: error: {err.message}" and "\n" not in report(err)
