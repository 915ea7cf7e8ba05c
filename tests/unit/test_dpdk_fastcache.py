"""The DPDK fast cache between a real Gateway and the real C table (no EAL, manual clock).

What the C path rewrote is folded back into the engine (counters, refresh), entries
leave when they expire, and every state-changing control op empties the table first.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from gatewaykit import Sent, make_spec
from natlab.behaviours.presets import policy_to_dict
from natlab.engine import Engine, Policy, Side
from natlab.gateway.service import Gateway
from natlab.packet import build

from dpdk_kit import require_dpdk_binding  # noqa: E402

require_dpdk_binding()

from natlab.datapaths.dpdk.fastcache import FastCache, key_of  # noqa: E402
from natlab.datapaths.dpdk.ports import Dataplane  # noqa: E402

A, Y = "192.168.77.2", "198.51.100.9"
MAC_IN, PEER = bytes.fromhex("020000000001"), bytes.fromhex("02000000aaaa")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rig(tmp_path):
    spec = dataclasses.replace(make_spec(tmp_path), datapath="dpdk", policy=policy_to_dict(Policy()),
                               extra={"dpdk": {"quantum": 0.5}})
    clock = Clock()
    gw = Gateway(spec, Engine(Policy(), spec.pool, random.Random(1)), Policy(), sender=Sent(),
                 clock=clock, wallclock=None)
    dp = Dataplane([], [], file_prefix="unit", capacity=64)
    dp.open_table()
    cache = FastCache(gw, dp, clock)
    yield gw, dp, cache, clock
    dp.close()


def hit(dp: Dataplane, packet: bytes, now: float) -> str:
    return dp.fast_frame(0, MAC_IN, bytearray(MAC_IN + PEER + b"\x08\x00" + packet), now)[1]


def established(gw: Gateway, cache: FastCache, packet: bytes) -> None:
    assert gw.process(packet, Side.INSIDE) is not None
    cache.offer(packet, Side.INSIDE, 1, PEER + MAC_IN, 1500)


def test_hits_in_c_fold_into_the_engine_counters_and_refresh(rig) -> None:
    gw, dp, cache, clock = rig
    pkt = build.udp(A, 5000, Y, 80)
    established(gw, cache, pkt)
    assert [hit(dp, pkt, clock.t + d) for d in (0.1, 0.2, 0.3)] == ["hit"] * 3
    clock.t += 0.35
    before = gw.op_mappings({})["mappings"][0]["expires_in"]
    cache.fold()
    counters = gw.counters()
    assert counters["translated_out"] == 4 and counters["gateway"]["fast_packets_inside"] == 3
    after = gw.op_mappings({})["mappings"][0]["expires_in"]
    assert after == pytest.approx(before + 0.3, abs=1e-6)  # refreshed as of the last hit (t + 0.3)


def test_an_entry_leaves_the_table_when_its_quantum_is_over(rig) -> None:
    gw, dp, cache, clock = rig
    pkt = build.udp(A, 5000, Y, 80)
    established(gw, cache, pkt)
    assert hit(dp, pkt, clock.t + 0.6) == "expired"
    clock.t += 0.6
    cache.fold()
    assert dp.stats()["entries"] == 0 and not cache.entries
    assert hit(dp, pkt, clock.t) == "absent"


@pytest.mark.parametrize("request_", [{"op": "flush"}, {"op": "advance", "seconds": 1},
                                      {"op": "set", "assignments": ["timeouts.udp=200"]}])
def test_every_state_changing_op_empties_the_table_first_and_keeps_the_counts(rig, request_) -> None:
    gw, dp, cache, clock = rig
    pkt = build.udp(A, 5000, Y, 80)
    established(gw, cache, pkt)
    hit(dp, pkt, clock.t)
    assert gw.handle(request_)["ok"]
    assert hit(dp, pkt, clock.t) == "absent" and dp.stats()["entries"] == 0
    assert gw.counters()["gateway"]["fast_packets_inside"] == 1


def test_read_only_ops_leave_the_table_alone(rig) -> None:
    gw, dp, cache, clock = rig
    pkt = build.udp(A, 5000, Y, 80)
    established(gw, cache, pkt)
    for op in ("status", "counters", "mappings", "events"):
        gw.handle({"op": op})
    assert hit(dp, pkt, clock.t) == "hit"


def test_forgetting_a_session_drops_both_directions(rig) -> None:
    gw, dp, cache, clock = rig
    out = build.udp(A, 5000, Y, 80)
    forwarded = gw.process(out, Side.INSIDE)
    cache.offer(out, Side.INSIDE, 1, PEER + MAC_IN, 1500)
    ext = (bytes(forwarded.data[12:16]), int.from_bytes(forwarded.data[20:22], "big"))
    back = build.udp(Y, 80, ".".join(map(str, ext[0])), ext[1])
    gw.process(back, Side.OUTSIDE)
    cache.offer(back, Side.OUTSIDE, 0, PEER + MAC_IN, 1500)
    assert dp.stats()["entries"] == 2
    cache.forget(key_of(gw.fast_entry(out, Side.INSIDE)))
    assert dp.stats()["entries"] == 0 and not cache.sessions


def test_a_port_mapping_made_and_deleted_by_nat_pmp_is_translated_in_c_then_gone_from_it(tmp_path) -> None:
    """The engine stays the authority for what the port mapping servers make: the inbound
    flow through a NAT-PMP mapping is installed in C like any other, and the delete (via
    the portmap shell) empties the table before the engine forgets the mapping."""
    from natlab.engine.port_mapping_policy import PortMappingPolicy
    from natlab.engine.types import Endpoint, Proto
    from natlab.gateway.portmap_shell import attach
    from natlab.portmap.natpmp import MapRequest

    policy = dataclasses.replace(Policy(), port_mapping=PortMappingPolicy(natpmp=True))
    spec = dataclasses.replace(make_spec(tmp_path), datapath="dpdk", policy=policy_to_dict(policy),
                               extra={"dpdk": {"quantum": 0.5}})
    clock = Clock()
    gw = Gateway(spec, Engine(policy, spec.pool, random.Random(1)), policy, sender=Sent(),
                 clock=clock, wallclock=None)
    dp = Dataplane([], [], file_prefix="unit", capacity=64)
    dp.open_table()
    try:
        cache = FastCache(gw, dp, clock)
        shell = attach(gw)
        alice = Endpoint.of(A, 5350)
        shell.on_udp(5351, MapRequest(Proto.UDP, 6000, 6000, 600).emit(), alice)
        inbound = build.udp(Y, 3478, "203.0.113.10", 6000)
        assert gw.process(inbound, Side.OUTSIDE) is not None
        cache.offer(inbound, Side.OUTSIDE, 0, PEER + MAC_IN, 1500)
        frame = lambda: bytearray(MAC_IN + PEER + b"\x08\x00" + inbound)  # noqa: E731
        assert dp.fast_frame(1, MAC_IN, frame(), clock.t + 0.1)[1] == "hit"  # side 1: from the outside
        shell.on_udp(5351, MapRequest(Proto.UDP, 6000, 6000, 0).emit(), alice)  # delete
        assert not cache.entries and dp.fast_frame(1, MAC_IN, frame(), clock.t + 0.2)[1] != "hit"
        assert gw.process(inbound, Side.OUTSIDE).__class__.__name__ == "Drop"
    finally:
        dp.close()
