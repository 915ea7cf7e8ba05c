"""natlab.behaviours.presets: validation errors, round trips, overrides, extends, discovery."""

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natlab.engine.policy import (Dependency, Hairpinning, Policy, Pooling, PortAssignment,
                                  PortRange, Refresh, Timeouts)
from natlab.errors import ConfigError, ConfigErrors
from natlab.behaviours.presets import (apply_overrides, load_preset, policy_from_dict, policy_to_dict,
                            preset_names, resolve)
from natlab.validate import validate_file


def write_preset(directory, name, policy_yaml="", extends=None, raw=None):
    """Write behaviours/<name>.yaml; policy_yaml is indented under 'policy:'."""
    if raw is None:
        head = f"name: {name}\nsummary: test preset\n"
        if extends:
            head += f"extends: {extends}\n"
        raw = head + "policy:\n" + textwrap.indent(textwrap.dedent(policy_yaml), "  ")
        if not policy_yaml.strip():
            raw = head + "policy: {}\n"
    file = directory / f"{name}.yaml"
    file.write_text(raw)
    return file


def error_for(tmp_path, policy_yaml):
    file = write_preset(tmp_path, "bad", policy_yaml)
    with pytest.raises(ConfigError) as info:
        load_preset(file)
    return file, info.value


# (policy yaml, line, dotted key, words that must appear in the one-line message)
BAD_POLICIES = [
    ("mapping: endpoint-independent\nfilterin: address-dependent\n", 5, "policy.filterin",
     ["unknown key 'filterin'", "did you mean 'filtering'", "valid keys in policy:", "hairpinning"]),
    ("timeouts:\n  udpp: 30\n", 5, "policy.timeouts.udpp",
     ["unknown key 'udpp'", "valid keys in policy.timeouts: udp, udp_unreplied"]),
    ("filtering: open\n", 4, "policy.filtering",
     ["got 'open'", "endpoint-independent, address-dependent, address-and-port-dependent"]),
    ("port_range: {low: 0, high: 2000}\n", 4, "policy.port_range.low",
     ["got 0", "range 1-65535"]),
    ("port_range:\n  low: 5000\n  high: 10\n", 4, "policy.port_range",
     ["low (5000) is above high (10)"]),
    ("timeouts:\n  udp: -5\n", 5, "policy.timeouts.udp", ["got -5", "> 0"]),
    ("hairpinning: sometimes\n", 4, "policy.hairpinning",
     ["none, internal-source, external-source"]),
    ("icmp: {echo: maybe}\n", 4, "policy.icmp.echo", ["got 'maybe'", "true or false"]),
    ("tcp: {syn_hold: 1}\n", 4, "policy.tcp.syn_hold", [">= 6"]),
]


@pytest.mark.parametrize("policy_yaml, line, key, words", BAD_POLICIES,
                         ids=[b[2] + ":" + b[3][0][:12] for b in BAD_POLICIES])
def test_bad_policy_is_one_error_naming_file_line_key_value_and_allowed(
        tmp_path, policy_yaml, line, key, words):
    file, err = error_for(tmp_path, policy_yaml)
    assert (err.file, err.line, err.key) == (str(file), line, key)
    assert err.message.startswith(f"{file}:{line}, key '{key}'")
    assert "\n" not in err.message
    for word in words:
        assert word in err.message


def test_several_errors_are_all_reported_in_line_order(tmp_path):
    file, err = error_for(tmp_path, "timeouts:\n  udp: -1\nport_range: {low: 0}\nrefresh: x\n")
    assert isinstance(err, ConfigErrors)
    assert err.key == "policy.timeouts.udp"  # the first error stays on the aggregate
    assert [(e.line, e.key) for e in err.errors] == [
        (5, "policy.timeouts.udp"), (6, "policy.port_range.low"), (7, "policy.refresh")]
    assert err.message.splitlines() == [e.message for e in err.errors]


@pytest.mark.parametrize("raw, line, words", [
    ("name: bad\nsummary: s\npolicy:\n  mapping: x\n  mapping: y\n", 5, "duplicate key 'mapping'"),
    ("name: bad\nsummary: s\npolicy:\n  mapping: [x\n", 5, "YAML syntax error"),
    ("name: bad\nsumary: s\npolicy: {}\n", 2, "did you mean 'summary'"),
    ("name: other\nsummary: s\npolicy: {}\n", 1, "does not match its file name"),
    ("name: bad\nsummary: s\npolicy: 5\n", 3, "policy must be a mapping"),
])
def test_bad_file_shape_is_one_error_with_file_and_line(tmp_path, raw, line, words):
    file = write_preset(tmp_path, "bad", raw=raw)
    with pytest.raises(ConfigError) as info:
        load_preset(file)
    assert info.value.file == str(file) and info.value.line == line
    assert words in info.value.message


def test_policy_to_dict_is_plain_json():
    data = policy_to_dict(Policy())
    assert data["mapping"] == "endpoint-independent"
    assert data["timeouts"]["udp"] == 300 and data["forwards"] == []


policies = st.builds(
    Policy,
    mapping=st.sampled_from(Dependency), filtering=st.sampled_from(Dependency),
    pooling=st.sampled_from(Pooling), port_assignment=st.sampled_from(PortAssignment),
    port_range=st.integers(1, 65535).flatmap(
        lambda low: st.integers(low, 65535).map(lambda high: PortRange(low, high))),
    port_parity=st.booleans(), port_block=st.none() | st.integers(1, 65535),
    timeouts=st.builds(Timeouts, udp=st.floats(0.5, 1e6), udp_unreplied=st.none() | st.floats(1, 600)),
    refresh=st.sampled_from(Refresh), hairpinning=st.sampled_from(Hairpinning),
)


@settings(max_examples=60, deadline=None)
@given(policies)
def test_policy_round_trips_through_dict(policy):
    assert policy_from_dict(policy_to_dict(policy)) == policy


def test_apply_overrides_deep_merges_and_revalidates():
    policy = apply_overrides(Policy(), {"timeouts": {"udp": 30}, "filtering": "address-dependent"})
    assert policy.timeouts.udp == 30 and policy.timeouts.icmp == 60
    assert policy.filtering is Dependency.ADDRESS_DEPENDENT


def test_bad_override_names_the_key_and_allowed_values():
    with pytest.raises(ConfigError) as info:
        apply_overrides(Policy(), {"port_range": {"low": 0}})
    assert info.value.key == "port_range.low" and "1-65535" in info.value.message


def test_extends_merges_the_parent_policy_and_notes(tmp_path):
    write_preset(tmp_path, "parent", "filtering: address-dependent\ntimeouts: {udp: 200}\n")
    child = write_preset(tmp_path, "child", "timeouts: {icmp: 90}\n", extends="parent")
    preset = load_preset(child)
    assert preset.policy.filtering is Dependency.ADDRESS_DEPENDENT
    assert (preset.policy.timeouts.udp, preset.policy.timeouts.icmp) == (200, 90)
    assert preset.extends == "parent"


def test_extends_can_name_a_shipped_preset(tmp_path):
    child = write_preset(tmp_path, "child", "hairpinning: none\n", extends="symmetric")
    preset = load_preset(child)
    assert preset.policy.mapping is Dependency.ADDRESS_AND_PORT_DEPENDENT
    assert preset.notes  # inherited


def test_extends_cycle_is_refused_with_the_chain(tmp_path):
    write_preset(tmp_path, "a", extends="b")
    write_preset(tmp_path, "b", extends="a")
    with pytest.raises(ConfigError) as info:
        load_preset(tmp_path / "a.yaml")
    assert "extends cycle" in info.value.message and "a -> b -> a" in info.value.message
    assert info.value.line == 3


def test_self_extension_is_a_cycle(tmp_path):
    with pytest.raises(ConfigError, match="extends cycle"):
        load_preset(write_preset(tmp_path, "me", extends="me"))


def test_unknown_preset_lists_known_names_and_suggests_one():
    with pytest.raises(ConfigError) as info:
        load_preset("symetric")
    assert "did you mean 'symmetric'" in info.value.message
    assert "rfc-recommended" in info.value.message


def test_env_directory_is_searched_first(tmp_path, monkeypatch):
    write_preset(tmp_path, "symmetric", "mapping: endpoint-independent\n")
    write_preset(tmp_path, "mine", "")
    monkeypatch.setenv("NATLAB_BEHAVIOURS", str(tmp_path))
    assert "mine" in preset_names()
    assert load_preset("symmetric").policy.mapping is Dependency.ENDPOINT_INDEPENDENT


def test_resolve_applies_overrides_on_a_named_preset():
    preset = resolve("full-cone", {"hairpinning": "none"})
    assert preset.policy.hairpinning is Hairpinning.NONE and preset.name == "full-cone"


def test_validate_file_describes_a_behaviour_in_one_line(tmp_path):
    line = validate_file(write_preset(tmp_path, "ok", "mapping: address-dependent\n"))
    assert "behaviour 'ok'" in line and "address-dependent mapping" in line and "\n" not in line


def test_validate_file_refuses_an_unknown_kind(tmp_path):
    file = tmp_path / "x.yaml"
    file.write_text("something: else\n")
    with pytest.raises(ConfigError, match="known kinds: behaviour"):
        validate_file(file)
