"""natlab.behaviours.overrides: KNOB=VALUE assignments from the command line."""

import pytest

from natlab.errors import ConfigError
from natlab.behaviours.overrides import flatten, parse_assignments


@pytest.mark.parametrize("items, expected", [
    (["timeouts.udp=30"], {"timeouts": {"udp": 30}}),
    (["filtering=address-dependent"], {"filtering": "address-dependent"}),
    (["icmp.echo=false"], {"icmp": {"echo": False}}),
    (["port_block="], {"port_block": None}),
    (["limits.max_mappings=null"], {"limits": {"max_mappings": None}}),
    (["port-assignment=random"], {"port_assignment": "random"}),
    (["timeouts.udp=30", "timeouts.icmp=90"], {"timeouts": {"udp": 30, "icmp": 90}}),
    (["timeouts.udp=1.5"], {"timeouts": {"udp": 1.5}}),
])
def test_assignments_become_a_nested_partial_policy(items, expected):
    assert parse_assignments(items) == expected


@pytest.mark.parametrize("item, words", [
    ("timeouts.udp", "not a KNOB=VALUE"),
    ("=30", "not a KNOB=VALUE"),
    ("timeouts..udp=1", "bad knob name"),
    ("x=[1,", "bad value"),
])
def test_malformed_assignment_is_one_config_error_with_a_hint(item, words):
    with pytest.raises(ConfigError) as info:
        parse_assignments([item])
    assert words in info.value.message and info.value.hint


def test_setting_a_section_and_a_knob_inside_it_conflicts():
    with pytest.raises(ConfigError, match="conflicting"):
        parse_assignments(["timeouts=5", "timeouts.udp=30"])


def test_flatten_is_the_inverse_shape():
    assert flatten({"timeouts": {"udp": 30}, "forwards": []}) == {"timeouts.udp": 30, "forwards": []}
