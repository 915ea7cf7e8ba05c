"""Port mapping configuration: presets per device type, file:line errors, scenario steps checked early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from natlab.behaviours.presets import apply_overrides, load_preset, resolve
from natlab.engine.policy import Policy
from natlab.engine.port_mapping_policy import PortMappingPolicy
from natlab.errors import ConfigError, ConfigErrors
from natlab.gateway.spec import GatewaySpec
from natlab.scenario import load

ROOT = Path(__file__).resolve().parents[2]
TWO_HOMES = ROOT / "topologies" / "two-homes.yaml"


@pytest.mark.parametrize("preset, served", [
    ("home-router-no-hairpin", {"natpmp", "upnp"}), ("home-router-internal-hairpin", {"natpmp", "upnp"}),
    ("cgn", {"pcp"}), ("linux-masquerade", set()), ("pfsense-default", set()), ("rfc-recommended", set()),
    ("symmetric", set()),
])
def test_each_device_type_serves_the_protocols_it_has(preset, served):
    pm = load_preset(preset).policy.port_mapping
    assert {name for name in ("natpmp", "pcp", "upnp") if getattr(pm, name)} == served
    assert not pm.pcp_interworking


def test_policy_serves_nothing_unless_told():
    assert not Policy().port_mapping.serves
    assert PortMappingPolicy.every_protocol().serves


def test_the_home_routers_differ_in_their_igd_version():
    assert load_preset("home-router-no-hairpin").policy.port_mapping.upnp_igd_version == 1
    assert load_preset("home-router-internal-hairpin").policy.port_mapping.upnp_igd_version == 2


def test_overrides_set_port_mapping_knobs_nested_or_dotted():
    policy = resolve("cgn", {"port_mapping": {"upnp": True}, "port_mapping.max_lifetime": 600}).policy
    assert policy.port_mapping.upnp and policy.port_mapping.pcp and policy.port_mapping.max_lifetime == 600


@pytest.mark.parametrize("overrides, key, hint", [
    ({"port_mapping": {"upnpp": True}}, "port_mapping.upnpp", "did you mean 'upnp'"),
    ({"port_mapping": {"epoch_on_reboot": "never"}}, "port_mapping.epoch_on_reboot", "reset, keep"),
    ({"port_mapping": {"upnp_igd_version": 3}}, "port_mapping.upnp_igd_version", "1-2"),
    ({"port_mapping": {"min_lifetime": 900, "max_lifetime": 100}}, "port_mapping", ""),
])
def test_a_wrong_port_mapping_knob_is_a_clear_error(overrides, key, hint):
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        apply_overrides(Policy(), overrides)
    text = str(info.value)
    assert key in text and hint in text


def test_a_preset_file_error_names_file_line_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsummary: x\npolicy:\n  port_mapping:\n    pcp: sure\n")
    with pytest.raises(ConfigError) as info:
        load_preset(bad)
    assert (info.value.line, info.value.key) == (5, "policy.port_mapping.pcp")


def test_the_spec_carries_inside_and_upstream_addresses_in_extra_where_old_images_ignore_them():
    spec = GatewaySpec("l", "gw", "ns", ("in0",), "out0", ("192.168.1.0/24",), "203.0.113.0/24",
                       ("203.0.113.1",), "p", {}, 1, "/run/x")
    assert spec.inside == "192.168.1.1" and spec.upstream_address == ""
    extra = {"portmap": {"inside_address": "192.168.1.254", "upstream_address": "100.64.0.1"}}
    there = GatewaySpec.from_json(GatewaySpec(**{**spec.__dict__, "extra": extra}).to_json())
    assert (there.inside, there.upstream_address) == ("192.168.1.254", "100.64.0.1")
    assert set(json.loads(there.to_json())) == set(json.loads(spec.to_json()))  # no new top-level key


def write(tmp_path: Path, steps: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"topology: {TWO_HOMES}\nsteps:\n{steps}")
    return path


def test_a_map_port_step_with_a_typo_names_its_line_and_the_key(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, "  - map_port: {host: alice, protocol: pcp, prot: 5000}\n"))
    assert info.value.line == 3 and "steps[0].map_port.prot" in info.value.key
    assert "did you mean 'port'" in info.value.message


@pytest.mark.parametrize("step, key", [
    ("  - map_port: {host: alicia, protocol: pcp, port: 5000}\n", "steps[0].map_port.host"),
    ("  - map_port: {host: alice, protocol: pcp, port: 5000, third_party: bobb}\n", "steps[0].map_port.third_party"),
    ("  - map_port: {host: alice, protocol: igd, port: 5000}\n", "steps[0].map_port.protocol"),
    ("  - map_port: {host: alice, protocol: pcp, port: 5000}\n    expect: {reslt: SUCCESS}\n",
     "steps[0].expect.reslt"),
])
def test_map_port_names_and_values_are_checked_before_a_lab_exists(tmp_path, step, key):
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, step))
    assert info.value.key == key


def test_a_saved_mapping_gives_its_endpoint_and_its_nonce_to_later_steps(tmp_path):
    scn = load(write(tmp_path, "  - map_port: {host: alice, protocol: pcp, port: 5000}\n    save: m\n"
                                "  - udp: {from: server, to: '${m}', at: 'alice:5000'}\n"
                                "  - map_port: {host: alice, protocol: pcp, port: 5000, delete: true, "
                                "nonce: '${m_nonce}'}\n"))
    assert [s.action for s in scn.steps] == ["map_port", "udp", "map_port"]
