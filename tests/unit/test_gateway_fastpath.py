"""The gateway's side of fast paths: entries on its clock, folding, and caches emptied before any change."""

from __future__ import annotations

import dataclasses
import random

import pytest

from gatewaykit import Sent, make_spec
from natlab.behaviours.presets import policy_to_dict
from natlab.engine import Engine, Policy, Side
from natlab.gateway.service import Gateway
from natlab.packet import build

A, Y = "192.168.77.2", "198.51.100.9"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def gateway(tmp_path, datapath="kernel-cache", extra=None) -> tuple[Gateway, Clock]:
    spec = dataclasses.replace(make_spec(tmp_path), datapath=datapath, policy=policy_to_dict(Policy()),
                               extra={"kernel_cache": {"quantum": 0.5}} if extra is None else extra)
    clock = Clock()
    engine = Engine(Policy(), spec.pool, random.Random(1))
    return Gateway(spec, engine, Policy(), sender=Sent(), clock=clock, wallclock=None), clock


def test_a_gateway_without_fast_path_options_offers_no_entries(tmp_path) -> None:
    gw, _ = gateway(tmp_path, datapath="nfqueue", extra={})
    pkt = build.udp(A, 5000, Y, 80)
    gw.process(pkt, Side.INSIDE)
    assert gw.fast_quantum is None and gw.fast_entry(pkt, Side.INSIDE) is None


def test_entries_follow_the_gateway_clock_and_its_quantum(tmp_path) -> None:
    gw, clock = gateway(tmp_path)
    pkt = build.udp(A, 5000, Y, 80)
    gw.process(pkt, Side.INSIDE)
    entry = gw.fast_entry(pkt, Side.INSIDE)
    assert entry.expires == pytest.approx(gw.now() + 0.5)
    gw.handle({"op": "advance", "seconds": 10})
    gw.process(pkt, Side.INSIDE)
    assert gw.fast_entry(pkt, Side.INSIDE).expires == pytest.approx(clock.t + 10 + 0.5)


def test_folded_packets_show_in_the_counters(tmp_path) -> None:
    gw, _ = gateway(tmp_path)
    pkt = build.udp(A, 5000, Y, 80)
    gw.process(pkt, Side.INSIDE)
    gw.fold_fast(gw.fast_entry(pkt, Side.INSIDE), 41, 41 * 28)
    counters = gw.counters()
    assert counters["translated_out"] == 42
    assert counters["gateway"]["fast_packets_inside"] == 41 and counters["gateway"]["fast_bytes"] == 41 * 28


@pytest.mark.parametrize("request_", [
    {"op": "set", "assignments": ["timeouts.udp=30"]},
    {"op": "advance", "seconds": 1},
    {"op": "flush"},
    {"op": "set-pool", "pool": ["203.0.113.11"]},
    {"op": "configure", "behaviour": "linux-masquerade"},
], ids=lambda r: r["op"])
def test_every_state_changing_op_empties_the_caches_before_it_acts(tmp_path, request_) -> None:
    gw, _ = gateway(tmp_path)
    seen = []
    gw.fast_invalidators.append(lambda: seen.append(len(gw.engine.mappings(gw.now()))))
    gw.process(build.udp(A, 5000, Y, 80), Side.INSIDE)
    assert gw.handle(request_)["ok"]
    assert seen == [1]  # called once, and before the op changed anything
    assert gw.counters()["gateway"]["fast_flushes"] == 1


@pytest.mark.parametrize("op", ["ping", "status", "counters", "mappings", "events"])
def test_reading_ops_leave_the_caches_alone(tmp_path, op) -> None:
    gw, _ = gateway(tmp_path)
    seen = []
    gw.fast_invalidators.append(lambda: seen.append(op))
    assert gw.handle({"op": op})["ok"]
    assert seen == []
