"""Topology files -> frozen specs: addresses, routes, seeds, and located errors."""

from __future__ import annotations

import json
import textwrap
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from natlab.errors import ConfigError, TopologyError
from natlab.topology import load
from natlab.topology.schema import SCHEMA_PATH, render

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "topologies").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_topologies_load(path: Path) -> None:
    topo = load(path)
    assert topo.name == path.stem
    for node in topo.nodes:
        for leg in node.legs:
            subnet = topo.network(leg.network).subnet
            assert all(a.ip in subnet for a in leg.addresses)


def test_shipped_public_addresses_are_documentation_ranges() -> None:
    docs = [IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    for path in SHIPPED:
        for net in load(path).networks:
            if net.gateway is None:
                assert any(net.subnet.subnet_of(d) for d in docs), (path.name, net.name)


def test_two_homes_addresses_and_routes() -> None:
    topo = load(REPO / "topologies" / "two-homes.yaml")
    nat_a, nat_b = topo.gateways
    assert nat_a.address == IPv4Address("192.168.1.1")
    assert nat_a.pool == (IPv4Address("203.0.113.1"),)
    assert nat_b.pool == (IPv4Address("203.0.113.21"), IPv4Address("203.0.113.22"))
    assert nat_b.overrides == {"hairpinning": "external-source"}
    alice = topo.node("alice")
    assert alice.addresses == (IPv4Address("192.168.1.2"),)
    assert [(str(r.dst), str(r.via)) for r in alice.routes] == [("0.0.0.0/0", "192.168.1.1")]
    assert topo.node("server").addresses == (IPv4Address("203.0.113.100"),
                                             IPv4Address("203.0.113.101"))
    assert topo.node("server").routes == ()


def test_double_nat_home_router_routes_via_cgn() -> None:
    topo = load(REPO / "topologies" / "double-nat.yaml")
    home = topo.node("home-router")
    cgn = topo.node("cgn")
    assert [r.via for r in home.routes] == [cgn.address]
    assert home.pool[0] in topo.network("carrier").subnet


def test_seeds_are_deterministic_and_per_gateway(tmp_path: Path) -> None:
    path = REPO / "topologies" / "two-homes.yaml"
    first, again = load(path), load(path)
    assert [g.seed for g in first.gateways] == [g.seed for g in again.gateways]
    assert first.gateways[0].seed != first.gateways[1].seed
    other = write(tmp_path, path.read_text().replace("name: two-homes", "name: x\nseed: 5"))
    assert [g.seed for g in load(other).gateways] != [g.seed for g in first.gateways]


def test_routers_join_wan_networks(tmp_path: Path) -> None:
    topo = load(write(tmp_path, """
        name: wan
        networks:
          a: {subnet: 192.0.2.0/24}
          b: {subnet: 198.51.100.0/24}
          c: {subnet: 203.0.113.0/24}
        routers:
          r1: {networks: [a, b]}
          r2: {networks: [b, c], addresses: {b: 198.51.100.254}}
        hosts:
          ha: {network: a}
          hc: {network: c}
    """))
    routes = {str(r.dst): str(r.via) for r in topo.node("ha").routes}
    assert routes == {"198.51.100.0/24": "192.0.2.1", "203.0.113.0/24": "192.0.2.1"}
    routes = {str(r.dst): str(r.via) for r in topo.node("r1").routes}
    assert routes == {"203.0.113.0/24": "198.51.100.254"}
    routes = {str(r.dst): str(r.via) for r in topo.node("hc").routes}
    assert routes == {"198.51.100.0/24": "203.0.113.1", "192.0.2.0/24": "203.0.113.1"}


BASE = """\
name: t
networks:
  internet: {subnet: 203.0.113.0/24}
  home: {subnet: 192.168.1.0/24}
gateways:
  nat: {behaviour: full-cone, inside: home, outside: internet}
hosts:
  alice: {network: home}
"""

# (behaviour under test, text appended/replaced, expected key, expected line, words in message)
BAD = [
    ("unknown top-level key", BASE + "colour: blue\n", "colour", 9, "unknown key"),
    ("unknown host key", BASE.replace("{network: home}", "{network: home, adress: 1.2.3.4}"),
     "hosts.alice.adress", 8, "unknown key"),
    ("unknown preset", BASE.replace("full-cone", "fullcone"), "gateways.nat.behaviour", 6,
     "unknown preset"),
    ("bad override", BASE.replace("outside: internet}", "outside: internet, overrides: {mapping: sometimes}}"),
     "gateways.nat.overrides.mapping", 6, "mapping"),
    ("address outside subnet", BASE + "  bob: {network: home, address: 192.168.2.5}\n",
     "hosts.bob.address", 9, "outside network 'home'"),
    ("clash with gateway", BASE + "  bob: {network: home, address: 192.168.1.1}\n",
     "hosts.bob.address", 9, "already used by gateways.nat"),
    ("clash with pool", BASE.replace("outside: internet}", "outside: internet, pool: [203.0.113.9]}")
     + "  srv: {network: internet, addresses: [203.0.113.9]}\n",
     "hosts.srv.addresses.0", 9, "already used by gateways.nat.pool.0"),
    ("pool outside outside subnet", BASE.replace("outside: internet}", "outside: internet, pool: [198.51.100.1]}"),
     "gateways.nat.pool.0", 6, "outside network 'internet'"),
    ("missing network", BASE.replace("{network: home}", "{network: office}"),
     "hosts.alice.network", 8, "no such network"),
    ("bad node name", BASE.replace("alice:", "Alice:"), "hosts.Alice", 8, "bad name"),
    ("bad lab name", BASE.replace("name: t", "name: 9lives"), "name", 1, "bad name"),
    ("inside equals outside", BASE.replace("inside: home", "inside: internet"),
     "gateways.nat.outside", 6, "must differ"),
    ("reserved name", BASE + "  sw: {network: home}\n", "hosts.sw", 9, "reserved"),
    ("duplicate node name", BASE + "routers:\n  nat: {networks: [internet, home]}\n",
     "routers.nat", 10, "already used"),
    ("broadcast address", BASE + "  bob: {network: home, address: 192.168.1.255}\n",
     "hosts.bob.address", 9, "broadcast"),
    ("address and addresses", BASE + "  bob: {network: home, address: 192.168.1.9, addresses: [192.168.1.8]}\n",
     "hosts.bob", 9, "either"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_topology_names_file_line_and_key(tmp_path: Path, case: tuple) -> None:
    _, text, key, line, words = case
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    with pytest.raises(TopologyError) as info:
        load(path)
    err = info.value
    assert (err.file, err.line, err.key) == (str(path), line, key), err.message
    assert words in err.message
    assert f"{path}:{line}" in err.message


def test_gateway_loop_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="loop"):
        load(write(tmp_path, """
            name: loop
            networks:
              a: {subnet: 10.1.0.0/24}
              b: {subnet: 10.2.0.0/24}
            gateways:
              g1: {behaviour: full-cone, inside: a, outside: b}
              g2: {behaviour: full-cone, inside: b, outside: a}
        """))


def test_yaml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, "name: x\nnetworks: {a: [\n"))
    assert info.value.file == str(tmp_path / "lab.yaml")


def test_preset_path_is_relative_to_the_topology(tmp_path: Path) -> None:
    preset = REPO / "behaviours" / "full-cone.yaml"
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "full-cone.yaml").write_text(preset.read_text())
    topo = load(write(tmp_path, BASE.replace("full-cone", "presets/full-cone.yaml")))
    assert topo.gateways[0].behaviour == str(tmp_path / "presets" / "full-cone.yaml")


def test_validate_knows_topologies() -> None:
    from natlab import validate

    message = validate.validate_file(REPO / "topologies" / "two-homes.yaml")
    assert "topology 'two-homes' is valid" in message


def test_shipped_schema_matches_the_code() -> None:
    assert SCHEMA_PATH.read_text() == render(), \
        "regenerate with: python -m natlab.topology.schema --write"
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["additionalProperties"] is False
