"""FlowKey, Dependency.key and the engine's read-only accessors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from enginekit import POOL3, X1, Y1, A, Nat, policy, udp  # noqa: E402

from natlab.engine import Dependency, StaticNat  # noqa: E402
from natlab.engine.types import FlowKey, to_int  # noqa: E402

FLOW = FlowKey(17, 1, 5000, 9, 80)


@pytest.mark.parametrize("dependency, key, label", [
    (Dependency.ENDPOINT_INDEPENDENT, (17, 1, 5000, None, None), "*"),
    (Dependency.ADDRESS_DEPENDENT, (17, 1, 5000, 9, None), "0.0.0.9"),
    (Dependency.ADDRESS_AND_PORT_DEPENDENT, (17, 1, 5000, 9, 80), "0.0.0.9:80"),
])
def test_a_dependency_trims_a_flow_to_its_key(dependency, key, label):
    trimmed = dependency.key(FLOW)
    assert trimmed == key and type(trimmed) is FlowKey
    assert trimmed.remote_label == label
    assert trimmed.internal == (1, 5000)


def test_flows_to_one_remote_address_share_an_address_dependent_key():
    other_port = FLOW._replace(y_port=443)
    assert Dependency.ADDRESS_DEPENDENT.key(FLOW) == Dependency.ADDRESS_DEPENDENT.key(other_port)
    assert Dependency.ADDRESS_AND_PORT_DEPENDENT.key(FLOW) != Dependency.ADDRESS_AND_PORT_DEPENDENT.key(other_port)


def test_a_flow_key_finds_what_a_plain_tuple_finds():
    table = {FLOW: "session"}
    assert table[(17, 1, 5000, 9, 80)] == "session"  # the per-packet path probes with a tuple


def test_the_mapping_table_shows_what_the_mapping_key_keeps_of_the_remote():
    nat = Nat(policy(mapping=Dependency.ADDRESS_DEPENDENT))
    nat.translated_out(udp(A, 5000, Y1, 80))
    assert nat.mappings()[0].remote == Y1


def test_the_engine_says_which_addresses_it_owns():
    nat = Nat(policy(static=(StaticNat(internal="192.168.1.9", external="203.0.113.50"),)), pool=POOL3)
    owned = nat.engine.addresses
    assert owned.pool == tuple(to_int(a) for a in POOL3)
    assert nat.engine.owns(to_int(X1)) and nat.engine.owns(to_int("203.0.113.50"))
    assert not nat.engine.owns(to_int(Y1))
    assert dict(owned.static_in) == {to_int("203.0.113.50"): to_int("192.168.1.9")}
    assert nat.engine.external_addresses == (*POOL3, "203.0.113.50")


def test_the_engine_reports_its_table_sizes():
    nat = Nat()
    nat.translated_out(udp(A, 5000, Y1, 80))
    nat.translated_out(udp(A, 5000, Y1, 81))
    sizes = nat.engine.table_sizes()
    assert (sizes["mappings"], sizes["sessions"], sizes["held_syns"], sizes["claims"]) == (1, 2, 0, 0)
