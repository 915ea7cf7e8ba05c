"""Every shipped preset loads, sets every knob explicitly, and round-trips."""

import json

import pytest

from natlab.cli.presets_cmd import schema_text
from natlab.engine.policy import Dependency, Hairpinning, Policy
from natlab.behaviours.overrides import flatten
from natlab.shipped import shipped_dir
from natlab.behaviours.presets import behaviour_schema, load_preset, policy_from_dict, policy_to_dict
from natlab.yamlsrc import load

SHIPPED = shipped_dir("behaviours")
FILES = sorted(SHIPPED.glob("*.yaml"))
EXPECTED = {
    "rfc-recommended", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric",
    "linux-masquerade", "cgn", "home-router-no-hairpin", "home-router-internal-hairpin",
}


def test_the_expected_presets_are_shipped():
    assert EXPECTED <= {f.stem for f in FILES}


@pytest.mark.parametrize("file", FILES, ids=[f.stem for f in FILES])
def test_shipped_preset_loads_round_trips_and_sets_every_knob(file):
    preset = load_preset(file)
    assert policy_from_dict(policy_to_dict(preset.policy)) == preset.policy
    written = set(flatten(load(file).data["policy"]))
    assert written == set(flatten(policy_to_dict(Policy())))
    assert set(preset.notes) == {"rfc", "observed_on", "hole_punching"}
    assert preset.summary and "\n" not in preset.summary


def test_rfc_recommended_is_the_policy_default():
    assert load_preset("rfc-recommended").policy == Policy()


@pytest.mark.parametrize("name, mapping, filtering, hairpinning", [
    ("full-cone", "endpoint-independent", "endpoint-independent", "external-source"),
    ("restricted-cone", "endpoint-independent", "address-dependent", "external-source"),
    ("port-restricted-cone", "endpoint-independent", "address-and-port-dependent", "external-source"),
    ("symmetric", "address-and-port-dependent", "address-and-port-dependent", "external-source"),
    ("home-router-no-hairpin", "endpoint-independent", "address-and-port-dependent", "none"),
    ("home-router-internal-hairpin", "endpoint-independent", "address-and-port-dependent",
     "internal-source"),
])
def test_classic_presets_differ_where_their_name_says(name, mapping, filtering, hairpinning):
    policy = load_preset(name).policy
    assert policy.mapping is Dependency(mapping) and policy.filtering is Dependency(filtering)
    assert policy.hairpinning is Hairpinning(hairpinning)


def test_linux_masquerade_has_conntrack_timers():
    t = load_preset("linux-masquerade").policy.timeouts
    assert (t.udp_unreplied, t.udp, t.tcp_established, t.tcp_transitory) == (30, 120, 432000, 120)


def test_cgn_gives_each_subscriber_512_port_blocks():
    policy = load_preset("cgn").policy
    assert policy.port_block == 512 and policy.pooling.value == "paired"


def test_shipped_schema_equals_the_generated_one():
    shipped = shipped_dir("schemas") / "behaviour.schema.json"
    assert json.loads(shipped.read_text()) == behaviour_schema()
    assert shipped.read_text() == schema_text(behaviour_schema())
