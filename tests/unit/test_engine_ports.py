"""External port assignment (RFC 4787 REQ-3, REQ-4) and CGN port blocks, with return paths."""

from __future__ import annotations

import pytest

from enginekit import A, B, C, Nat, X1, Y1, Y2, dst_of, kinds, policy, udp, udp_round_trip
from natlab.engine import Dependency, DropReason, EventKind, PortAssignment, PortRange, Side

PRESERVE, OVERLOAD = PortAssignment.PRESERVE, PortAssignment.OVERLOAD
RANDOM, SEQUENTIAL = PortAssignment.RANDOM, PortAssignment.SEQUENTIAL
RANGE = PortRange(40000, 40999)


def test_preserve_keeps_the_internal_port_when_free():
    nat = Nat(policy(port_assignment=PRESERVE))
    assert udp_round_trip(nat, A, 5000, Y1, 80) == (X1, 5000)


@pytest.mark.parametrize("xport", [5000, 5001], ids=["even", "odd"])
def test_preserve_picks_another_port_on_collision(xport):
    nat = Nat(policy(port_assignment=PRESERVE))
    a = udp_round_trip(nat, A, xport, Y1, 80)
    b = udp_round_trip(nat, B, xport, Y1, 80)
    assert a == (X1, xport)
    assert b[1] != xport
    assert b[1] % 2 == xport % 2  # REQ-4 parity, the default
    assert udp_round_trip(nat, A, xport, Y2, 80) == a  # A's mapping is untouched


def test_overload_keeps_the_port_and_evicts_the_older_mapping():
    nat = Nat(policy(port_assignment=OVERLOAD))
    assert udp_round_trip(nat, A, 5000, Y1, 80) == (X1, 5000)
    v = nat.out(udp(B, 5000, Y1, 80))
    assert EventKind.MAPPING_EVICTED in kinds(v.events)
    evicted = next(e for e in v.events if e.kind is EventKind.MAPPING_EVICTED)
    assert evicted.internal == f"{A}:5000"
    assert dst_of(nat.translated_in(udp(Y1, 80, X1, 5000))) == (B, 5000)
    assert [m.internal for m in nat.mappings()] == [f"{B}:5000"]
    assert nat.engine.counters.snapshot()["mappings_evicted"] == 1


@pytest.mark.parametrize("xport", [5000, 40500], ids=["outside_range", "inside_range"])
def test_random_assignment_stays_in_range_and_moves_the_port(xport):
    nat = Nat(policy(port_assignment=RANDOM, port_range=RANGE))
    ports = [udp_round_trip(nat, host, xport, Y1, 80)[1] for host in (A, B, C)]
    assert all(RANGE.low <= p <= RANGE.high for p in ports)
    assert xport not in ports
    assert len(set(ports)) == 3


def test_sequential_assignment_gives_increasing_ports():
    nat = Nat(policy(port_assignment=SEQUENTIAL, port_range=RANGE, port_parity=False))
    ports = [udp_round_trip(nat, A, 5000 + i, Y1, 80)[1] for i in range(10)]
    assert ports == sorted(ports)
    assert len(set(ports)) == 10
    assert all(RANGE.low <= p <= RANGE.high for p in ports)


@pytest.mark.parametrize("mode", [RANDOM, SEQUENTIAL], ids=lambda m: m.value)
def test_assignment_respects_a_tiny_range_then_reports_exhaustion(mode):
    nat = Nat(policy(port_assignment=mode, port_range=PortRange(30000, 30003), port_parity=False))
    ports = {udp_round_trip(nat, A, 5000 + i, Y1, 80)[1] for i in range(4)}
    assert ports == {30000, 30001, 30002, 30003}
    assert nat.dropped(udp(A, 6000, Y1, 80), Side.INSIDE).reason is DropReason.PORT_EXHAUSTED


@pytest.mark.parametrize("mode", [PRESERVE, OVERLOAD], ids=lambda m: m.value)
def test_preserve_and_overload_keep_external_ports_inside_port_range(mode):
    nat = Nat(policy(port_assignment=mode, port_range=RANGE))
    ext = udp_round_trip(nat, A, 5000, Y1, 80)
    assert RANGE.low <= ext[1] <= RANGE.high


@pytest.mark.parametrize("mode", [RANDOM, SEQUENTIAL, PRESERVE], ids=lambda m: m.value)
@pytest.mark.parametrize("xport", [7000, 7001], ids=["even", "odd"])
def test_parity_is_kept_when_port_parity(mode, xport):
    nat = Nat(policy(port_assignment=mode, port_parity=True, mapping=Dependency.ADDRESS_AND_PORT_DEPENDENT))
    # APDM: every destination port is a new mapping of the same X:x; preserve collides after the first.
    ports = [udp_round_trip(nat, A, xport, Y1, 1000 + i)[1] for i in range(12)]
    assert {p % 2 for p in ports} == {xport % 2}


@pytest.mark.parametrize("mode", [RANDOM, SEQUENTIAL], ids=lambda m: m.value)
def test_parity_is_not_necessarily_kept_without_port_parity(mode):
    nat = Nat(policy(port_assignment=mode, port_parity=False, mapping=Dependency.ADDRESS_AND_PORT_DEPENDENT))
    ports = [udp_round_trip(nat, A, 7000, Y1, 1000 + i)[1] for i in range(12)]
    assert {p % 2 for p in ports} == {0, 1}


# -- CGN port blocks ------------------------------------------------------------------
def _block_of(port: int, size: int, low: int) -> int:
    return (port - low) // size


@pytest.mark.parametrize("mode", [PRESERVE, RANDOM, SEQUENTIAL], ids=lambda m: m.value)
def test_port_block_keeps_a_hosts_ports_in_its_block(mode):
    size = 64
    nat = Nat(policy(port_block=size, port_assignment=mode, port_range=RANGE))
    blocks = {}
    for host in (A, B):
        ports = [udp_round_trip(nat, host, 5000 + i, Y1, 80)[1] for i in range(10)]
        assert all(RANGE.low <= p <= RANGE.high for p in ports)
        host_blocks = {_block_of(p, size, RANGE.low) for p in ports}
        assert len(host_blocks) == 1, f"{host} ports span blocks: {ports}"
        blocks[host] = host_blocks.pop()
    assert blocks[A] != blocks[B]


def test_port_block_gives_a_host_a_second_block_when_the_first_fills():
    size = 4
    nat = Nat(policy(port_block=size, port_assignment=SEQUENTIAL, port_parity=False, port_range=RANGE))
    a_ports = [udp_round_trip(nat, A, 5000 + i, Y1, 80)[1] for i in range(6)]
    b_ports = [udp_round_trip(nat, B, 5000 + i, Y1, 80)[1] for i in range(2)]
    a_blocks = {_block_of(p, size, RANGE.low) for p in a_ports}
    b_blocks = {_block_of(p, size, RANGE.low) for p in b_ports}
    assert len(a_blocks) == 2
    assert not a_blocks & b_blocks
