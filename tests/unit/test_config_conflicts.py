"""Address conflicts in a configuration are located ConfigErrors, all reported at once, before any run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from natlab.engine.policy import Policy, PortForward, Protocol, StaticNat
from natlab.errors import ConfigError, errors_of
from natlab.behaviours.presets import apply_overrides
from natlab.shipped import shipped_dir
from natlab.topology.conflicts import gateway_problems, policy_problems, pool_problems
from natlab.validate import validate_file

ROOT = Path(__file__).resolve().parents[2]
HAIRPIN = ROOT / "topologies" / "hairpin.yaml"
INSIDE, OUTSIDE = IPv4Network("192.168.1.0/24"), IPv4Network("203.0.113.0/24")


def write(tmp_path: Path, text: str, name: str = "file.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def errors_in(path: Path) -> tuple[ConfigError, ...]:
    with pytest.raises(ConfigError) as info:
        validate_file(path)
    return errors_of(info.value)


def static(*pairs: tuple[str, str]) -> tuple[StaticNat, ...]:
    return tuple(StaticNat(internal=i, external=e) for i, e in pairs)


def forward(port: int, target: str, proto: str = "udp") -> PortForward:
    return PortForward(protocol=Protocol(proto), external_port=port, internal_address=target)


# --- the pure check the gateway service calls too ------------------------------------

@pytest.mark.parametrize("policy, pool, path, what", [
    (Policy(static=static(("192.168.1.20", "203.0.113.1"))), ["203.0.113.1"],
     ("static", 0, "external"), "static external address is also a pool address"),
    (Policy(static=static(("192.168.1.20", "203.0.113.50"), ("192.168.1.21", "203.0.113.50"))),
     [], ("static", 1, "external"), "static external address listed twice"),
    (Policy(static=static(("192.168.1.20", "203.0.113.50"), ("192.168.1.20", "203.0.113.51"))),
     [], ("static", 1, "internal"), "static internal address listed twice"),
    (Policy(forwards=(forward(53, "192.168.1.10"), forward(53, "192.168.1.11"))), [],
     ("forwards", 1, "external_port"), "udp port forwarded twice"),
    (Policy(static=static(("192.168.1.20", "224.0.0.5"))), [],
     ("static", 0, "external"), "static external address is multicast"),
    (Policy(static=static(("192.168.1.20", "0.0.0.0"))), [],
     ("static", 0, "external"), "static external address is unspecified (0.0.0.0)"),
    (Policy(static=static(("192.168.1.20", "255.255.255.255"))), [],
     ("static", 0, "external"), "static external address is the broadcast address"),
    (Policy(static=static(("192.168.1.20", "198.51.100.7"))), [],
     ("static", 0, "external"), "static external address is outside the gateway's outside network"),
    (Policy(static=static(("192.168.1.20", "203.0.113.255"))), [],
     ("static", 0, "external"), "static external address is the network or broadcast address"),
    (Policy(static=static(("10.0.0.1", "203.0.113.50"))), [],
     ("static", 0, "internal"), "static internal address is outside the gateway's inside network"),
    (Policy(forwards=(forward(80, "10.0.0.1", "tcp"),)), [],
     ("forwards", 0, "internal_address"), "forward target address is outside the gateway's inside"),
    (Policy(static=static(("192.168.1.999", "203.0.113.50"))), [],
     ("static", 0, "internal"), "invalid static internal address"),
    (Policy(forwards=(forward(53, "192.168.1.x"),)), [],
     ("forwards", 0, "internal_address"), "invalid forward target address"),
])
def test_each_conflict_is_one_problem_at_its_key(policy, pool, path, what) -> None:
    problems = policy_problems(policy, pool, INSIDE, OUTSIDE)
    assert [p.path for p in problems] == [path]
    assert problems[0].what.startswith(what)


def test_a_forward_port_may_repeat_on_the_other_protocol() -> None:
    policy = Policy(forwards=(forward(53, "192.168.1.10"), forward(53, "192.168.1.10", "tcp")))
    assert policy_problems(policy, (), INSIDE, OUTSIDE) == []


def test_without_subnets_only_what_the_policy_says_itself_is_checked() -> None:
    policy = Policy(static=static(("10.0.0.1", "198.51.100.7")),
                    forwards=(forward(80, "10.9.9.9", "tcp"),))
    assert policy_problems(policy) == []
    assert [p.what for p in policy_problems(policy, (), INSIDE, OUTSIDE)] == [
        "static internal address is outside the gateway's inside network",
        "static external address is outside the gateway's outside network",
        "forward target address is outside the gateway's inside network"]


@pytest.mark.parametrize("pool, what", [
    (["203.0.113.7", "203.0.113.7"], "pool address listed twice"),
    (["198.51.100.1"], "pool address is outside the gateway's outside network"),
    (["224.1.1.1"], "pool address is multicast"),
    (["203.0.113.300"], "invalid pool address"),
])
def test_a_new_pool_is_checked_against_the_outside_network(pool, what) -> None:
    assert [p.what for p in pool_problems(pool, OUTSIDE)] == [what]


def test_gateway_problems_checks_a_live_change_and_names_its_key() -> None:
    policy = Policy(static=static(("192.168.1.20", "203.0.113.5")))
    problems = gateway_problems(policy, ["203.0.113.5"], INSIDE, OUTSIDE)
    assert [p.key for p in problems] == ["static[0].external"]
    err = problems[0].error()
    assert err.key == "static[0].external" and err.got == "203.0.113.5" and err.hint


def test_overrides_typed_at_the_command_line_refuse_an_invalid_address() -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(Policy(), {"static": [{"internal": "1.2.3.999", "external": "5.6.7.8"}]})
    assert info.value.key == "static[0].internal"
    assert "Octet 999" in info.value.hint


# --- topologies -------------------------------------------------------------------

TOPOLOGY = """
    name: conflicts
    networks:
      internet: {subnet: 203.0.113.0/24}
      home: {subnet: 192.168.1.0/24}
    gateways:
      nat:
        behaviour: full-cone
        inside: home
        outside: internet
        pool: [203.0.113.1, 203.0.113.2]
        overrides:
          static:
            - {internal: 192.168.1.20, external: 203.0.113.1}
            - {internal: 192.168.1.20, external: 198.51.100.5}
            - {internal: 192.168.1.999, external: 224.0.0.1}
            - {internal: 192.168.1.30, external: 0.0.0.0}
          forwards:
            - {protocol: udp, external_port: 53, internal_address: 192.168.1.10}
            - {protocol: udp, external_port: 53, internal_address: 10.0.0.1}
    hosts:
      alice: {network: home, address: 192.168.1.10}
      bob: {network: home, address: 192.168.1.256}
"""

EVERY_CONFLICT = [
    (13, "gateways.nat.overrides.static[0].external", "static external address is also a pool address"),
    (14, "gateways.nat.overrides.static[1].internal", "static internal address listed twice"),
    (14, "gateways.nat.overrides.static[1].external",
     "static external address is outside the gateway's outside network"),
    (15, "gateways.nat.overrides.static[2].internal", "invalid static internal address"),
    (15, "gateways.nat.overrides.static[2].external", "static external address is multicast"),
    (16, "gateways.nat.overrides.static[3].external",
     "static external address is unspecified (0.0.0.0)"),
    (19, "gateways.nat.overrides.forwards[1].internal_address",
     "forward target address is outside the gateway's inside network"),
    (19, "gateways.nat.overrides.forwards[1].external_port", "udp port forwarded twice"),
    (22, "hosts.bob.address", "invalid IPv4 address"),
]


def test_a_topology_with_every_conflict_lists_them_all_in_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, TOPOLOGY)
    errors = errors_in(path)
    assert [(e.line, e.key, e.what) for e in errors] == EVERY_CONFLICT
    assert all(e.file == str(path) and e.hint and e.got is not None for e in errors)


ONE_GATEWAY = """
    name: one
    networks:
      internet: {{subnet: 203.0.113.0/24}}
      home: {{subnet: 192.168.1.0/24}}
    gateways:
      nat:
        behaviour: full-cone
        inside: home
        outside: internet
        pool: [203.0.113.1]
        overrides:
          {knob}:
            - {first}
            - {second}
"""


@pytest.mark.parametrize("knob, first, second, key, what", [
    ("static", "{internal: 192.168.1.20, external: 203.0.113.9}",
     "{internal: 192.168.1.21, external: 203.0.113.1}",
     "static[1].external", "static external address is also a pool address"),
    ("static", "{internal: 192.168.1.20, external: 203.0.113.9}",
     "{internal: 192.168.1.21, external: 203.0.113.9}",
     "static[1].external", "static external address listed twice"),
    ("static", "{internal: 192.168.1.20, external: 203.0.113.9}",
     "{internal: 192.168.1.20, external: 203.0.113.8}",
     "static[1].internal", "static internal address listed twice"),
    ("forwards", "{protocol: tcp, external_port: 22, internal_address: 192.168.1.10}",
     "{protocol: tcp, external_port: 22, internal_address: 192.168.1.11}",
     "forwards[1].external_port", "tcp port forwarded twice"),
    ("static", "{internal: 192.168.1.20, external: 203.0.113.9}",
     "{internal: 192.168.1.21, external: 239.1.2.3}",
     "static[1].external", "static external address is multicast"),
    ("static", "{internal: 192.168.1.20, external: 203.0.113.9}",
     "{internal: 192.168.1.21, external: 0.0.0.0}",
     "static[1].external", "static external address is unspecified (0.0.0.0)"),
    ("static", "{internal: 192.168.1.20, external: 203.0.113.9}",
     "{internal: 192.168.1.21, external: 203.0.113.255}",
     "static[1].external", "static external address is the network or broadcast address"),
    ("static", "{internal: 192.168.1.20, external: 203.0.113.9}",
     "{internal: 192.168.1.21, external: 198.51.100.9}",
     "static[1].external", "static external address is outside the gateway's outside network"),
    ("forwards", "{protocol: tcp, external_port: 22, internal_address: 192.168.1.10}",
     "{protocol: tcp, external_port: 23, internal_address: 172.16.0.1}",
     "forwards[1].internal_address", "forward target address is outside the gateway's inside"),
    ("static", "{internal: 192.168.1.20, external: 203.0.113.9}",
     "{internal: 192.168.1.999, external: 203.0.113.8}",
     "static[1].internal", "invalid static internal address"),
    ("forwards", "{protocol: tcp, external_port: 22, internal_address: 192.168.1.10}",
     "{protocol: tcp, external_port: 23, internal_address: 192.168.1.999}",
     "forwards[1].internal_address", "invalid forward target address"),
])
def test_each_topology_conflict_alone_is_reported_at_its_line(tmp_path: Path, knob, first,
                                                                second, key, what) -> None:
    path = write(tmp_path, ONE_GATEWAY.format(knob=knob, first=first, second=second))
    (err,) = errors_in(path)
    assert (err.line, err.key) == (14, f"gateways.nat.overrides.{key}")
    assert err.what.startswith(what) and err.hint and err.file == str(path)


def test_a_static_external_must_not_be_the_picked_pool_address_or_a_hosts(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: picked
        networks:
          internet: {subnet: 203.0.113.0/24}
          home: {subnet: 192.168.1.0/24}
        gateways:
          nat:
            behaviour: full-cone
            inside: home
            outside: internet
            overrides:
              static:
                - {internal: 192.168.1.20, external: 203.0.113.1}
                - {internal: 192.168.1.21, external: 203.0.113.100}
        hosts:
          server: {network: internet, address: 203.0.113.100}
    """)
    assert [(e.line, e.what) for e in errors_in(path)] == [
        (12, "static external address is the gateway's picked pool address"),
        (13, "static external address is already used by host 'server'")]


def test_invalid_subnets_say_what_is_wrong_and_suggest_the_network(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: subnets
        networks:
          internet: {subnet: 203.0.113.5/24}
          home: {subnet: 192.168.1.0/33}
        gateways:
          nat: {behaviour: full-cone, inside: home, outside: internet, pool: [203.0.113.256]}
    """)
    errors = errors_in(path)
    assert [(e.line, e.key, e.what) for e in errors] == [
        (3, "networks.internet.subnet", "invalid IPv4 subnet"),
        (4, "networks.home.subnet", "invalid IPv4 subnet"),
        (6, "gateways.nat.pool.0", "invalid IPv4 address")]
    assert "did you mean '203.0.113.0/24'" in errors[0].hint
    assert "Octet 256" in errors[2].hint


# --- presets: only what a policy says about itself --------------------------------------

def test_a_preset_reports_duplicates_invalid_and_special_addresses(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: mine
        summary: conflicting
        extends: full-cone
        policy:
          static:
            - {internal: 192.168.1.20, external: 203.0.113.50}
            - {internal: 192.168.1.20, external: 203.0.113.50}
            - {internal: 10.0.0.256, external: 0.0.0.0}
          forwards:
            - {protocol: tcp, external_port: 22, internal_address: 255.255.255.255}
            - {protocol: tcp, external_port: 22, internal_address: 10.1.2.3}
    """, name="mine.yaml")
    assert [(e.line, e.key) for e in errors_in(path)] == [
        (7, "policy.static[1].internal"), (7, "policy.static[1].external"),
        (8, "policy.static[2].internal"), (8, "policy.static[2].external"),
        (10, "policy.forwards[0].internal_address"), (11, "policy.forwards[1].external_port")]


def test_a_presets_static_entry_outside_the_topologys_network_points_at_behaviour(
        tmp_path: Path) -> None:
    write(tmp_path, """
        name: mine
        summary: a static entry for another network
        extends: full-cone
        policy:
          static: [{internal: 10.0.0.5, external: 198.51.100.9}]
    """, name="mine.yaml")
    path = write(tmp_path, HAIRPIN.read_text().replace("behaviour: full-cone",
                                                       "behaviour: ./mine.yaml"), "topo.yaml")
    errors = errors_in(path)
    assert {e.key for e in errors} == {"gateways.nat.behaviour"}
    assert all("override 'static'" in e.hint for e in errors)


# --- scenarios --------------------------------------------------------------------

SCENARIO = f"""
    topology: {HAIRPIN}
    gateways:
      nat:
        overrides:
          static:
            - {{internal: 192.168.1.20, external: 203.0.113.1}}
            - {{internal: 10.0.0.5, external: 203.0.113.999}}
          forwards:
            - {{protocol: udp, external_port: 53, internal_address: 192.168.1.10}}
            - {{protocol: udp, external_port: 53, internal_address: 0.0.0.0}}
    steps:
      - udp: {{from: alice, to: "203.0.113.999:3478"}}
        expect: {{source: "nat:99999"}}
      - set: {{gateway: nat, knobs: {{static: [{{internal: 192.168.1.999, external: 198.51.100.1}}]}}}}
      - configure: {{gateway: nat, behaviour: full-cone, overrides: {{forwards: [{{protocol: tcp, external_port: 80, internal_address: 192.168.2.1}}]}}}}
      - set_pool: {{gateway: nat, addresses: [203.0.113.7, 203.0.113.7, 198.51.100.1]}}
      - mappings: {{gateway: nat, internal: "192.168.1.300:*"}}
"""


def test_a_scenario_lists_every_conflict_in_line_order(tmp_path: Path) -> None:
    errors = errors_in(write(tmp_path, SCENARIO, "scn.yaml"))
    assert [(e.line, e.key) for e in errors] == [
        (7, "gateways.nat.overrides.static[1].internal"),
        (7, "gateways.nat.overrides.static[1].external"),
        (10, "gateways.nat.overrides.forwards[1].internal_address"),
        (10, "gateways.nat.overrides.forwards[1].external_port"),
        (12, "steps[0].udp.to"),
        (13, "steps[0].expect.source"),
        (14, "steps[1].set.knobs.static[0].internal"),
        (14, "steps[1].set.knobs.static[0].external"),
        (15, "steps[2].configure.overrides.forwards[0].internal_address"),
        (16, "steps[3].set_pool.addresses[1]"),
        (16, "steps[3].set_pool.addresses[2]"),
        (17, "steps[4].mappings.internal"),
    ]


@pytest.mark.parametrize("inline", [False, True])
def test_a_scenarios_static_on_a_picked_or_used_address_points_at_the_scenario(
        tmp_path: Path, inline: bool) -> None:
    topology = f"topology: {HAIRPIN}" if not inline else "topology:\n" + textwrap.indent(
        "\n".join(ln for ln in HAIRPIN.read_text().splitlines() if not ln.startswith("#")), "  ")
    path = tmp_path / "scn.yaml"
    path.write_text(topology + textwrap.dedent("""
        gateways:
          nat:
            overrides:
              static:
                - {internal: 192.168.1.20, external: 203.0.113.1}
                - {internal: 192.168.1.21, external: 203.0.113.100}
        steps:
          - udp: {from: alice, to: "server:3478"}
    """))
    errors = errors_in(path)
    assert [e.key for e in errors] == ["gateways.nat.overrides.static[0].external",
                                       "gateways.nat.overrides.static[1].external"]
    assert all(e.file == str(path) for e in errors)
    lines = path.read_text().splitlines()
    assert [lines[e.line - 1].strip()[:34] for e in errors] == [
        "- {internal: 192.168.1.20, externa", "- {internal: 192.168.1.21, externa"]


def test_a_set_pool_that_takes_a_static_address_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        topology: {HAIRPIN}
        gateways:
          nat: {{overrides: {{static: [{{internal: 192.168.1.20, external: 203.0.113.50}}]}}}}
        steps:
          - set_pool: {{gateway: nat, addresses: [203.0.113.50]}}
    """, "scn.yaml")
    (err,) = errors_in(path)
    assert (err.line, err.key) == (5, "steps[0].set_pool.addresses")
    assert "static[0].external" in err.what


def run_memory(path: Path) -> subprocess.CompletedProcess:
    """``natlab run --backend memory PATH`` as a user runs it (errors are printed by main())."""
    return subprocess.run([sys.executable, "-m", "natlab", "run", "--backend", "memory", str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("target", ["203.0.113.999:3478", "server:70000"])
def test_run_on_memory_refuses_a_bad_probe_target_in_one_located_line(
        tmp_path: Path, target: str) -> None:
    path = write(tmp_path, f"""
        topology: {HAIRPIN}
        steps:
          - udp: {{from: alice, to: "{target}"}}
    """, "scn.yaml")
    result = run_memory(path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"natlab: error: {path}:3, key 'steps[0].udp.to'")


def test_run_on_memory_refuses_an_invalid_static_set_live(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        topology: {HAIRPIN}
        steps:
          - set: {{gateway: nat, knobs: {{static: [{{internal: 192.168.1.999, external: 203.0.113.60}}]}}}}
    """, "scn.yaml")
    result = run_memory(path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "steps[0].set.knobs.static[0].internal" in result.stderr


# --- what ships still validates ---------------------------------------------------------

SHIPPED = sorted([*(ROOT / "topologies").glob("*.yaml"), *shipped_dir("behaviours").glob("*.yaml"),
                  *shipped_dir("scenarios").glob("*.yaml"),
                  *(ROOT / "tests" / "netns" / "e2e" / "topologies").glob("*.yaml")])


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_files_still_validate(path: Path) -> None:
    assert "is valid" in validate_file(path)
