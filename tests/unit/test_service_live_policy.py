"""A live ``set``/``configure`` is checked like a topology, and static externals hairpin.

The same conflicts a topology file may not have (natlab.topology.conflicts) are refused
at a running gateway, answered as errors; a static 1:1 external added live becomes a
hairpin destination in the gateway's rules like the pool (RFC 4787 REQ-9).
"""

from __future__ import annotations

import random

from natlab.engine import Engine
from natlab.gateway.service import Gateway
from natlab.behaviours.presets import resolve

from gatewaykit import Sent, make_spec


class Hooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def add_addresses(self, a): self.calls.append(("add", list(a)))
    def remove_addresses(self, a): self.calls.append(("remove", list(a)))
    def set_rules_pool(self, p): self.calls.append(("pool", list(p)))
    def set_rules_static(self, s): self.calls.append(("static", list(s)))


def _gateway(tmp_path) -> tuple[Gateway, Hooks]:
    policy = resolve("rfc-recommended").policy
    hooks = Hooks()
    engine = Engine(policy, ["203.0.113.10"], random.Random(7))
    return Gateway(make_spec(tmp_path), engine, policy, sender=Sent(), pool_hooks=hooks), hooks


def _static(internal: str, external: str) -> str:
    return f'static=[{{internal: {internal}, external: {external}}}]'


def test_live_static_external_on_a_pool_address_is_refused(tmp_path):
    gateway, hooks = _gateway(tmp_path)
    answer = gateway.handle({"op": "set", "assignments": [_static("192.168.77.5", "203.0.113.10")]})
    assert answer["ok"] is False and "pool address" in answer["error"]
    assert hooks.calls == [] and gateway.policy.static == ()


def test_live_static_external_outside_the_outside_network_is_refused(tmp_path):
    gateway, _ = _gateway(tmp_path)
    answer = gateway.handle({"op": "set", "assignments": [_static("192.168.77.5", "198.51.100.5")]})
    assert answer["ok"] is False and "outside the gateway's outside network" in answer["error"]


def test_live_forward_to_an_address_outside_the_inside_network_is_refused(tmp_path):
    gateway, _ = _gateway(tmp_path)
    forward = "forwards=[{protocol: udp, external_port: 53, internal_address: 10.0.0.1, internal_port: 53}]"
    answer = gateway.handle({"op": "set", "assignments": [forward]})
    assert answer["ok"] is False and "inside network" in answer["error"]


def test_static_external_set_live_becomes_a_hairpin_destination_and_goes_when_removed(tmp_path):
    gateway, hooks = _gateway(tmp_path)
    assert gateway.handle({"op": "set", "assignments": [_static("192.168.77.5", "203.0.113.50")]})["ok"]
    assert hooks.calls == [("add", ["203.0.113.50"]), ("static", ["203.0.113.50"]), ("remove", [])]
    hooks.calls.clear()
    assert gateway.handle({"op": "set", "assignments": ["static=[]"]})["ok"]
    assert hooks.calls == [("add", []), ("static", []), ("remove", ["203.0.113.50"])]
