"""Limits, port forwards, static 1:1 NAT, determinism, reconfigure / set_pool / flush."""

from __future__ import annotations

import random


import pytest

from enginekit import (
    POOL3, SYN, A, B, Nat, X1, Y1, Y2, dst_of, icmp_echo, kinds, policy, src_of, tcp, udp, udp_round_trip,
)
from natlab.engine import (
    Dependency, DropReason, EventKind, Pooling, PortAssignment, PortForward, Protocol, Side, StaticNat,
)

STATIC_EXT = "203.0.113.50"


# -- limits -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "limits, hosts",
    [
        pytest.param({"max_mappings": 3}, (A, A, B, B), id="max_mappings_counts_all_hosts"),
        pytest.param({"max_mappings_per_host": 3}, (A, A, A, A), id="max_mappings_per_host"),
    ],
)
def test_limits_drop_limit_reached(limits, hosts):
    nat = Nat(policy(limits=limits))
    for i, host in enumerate(hosts[:3]):
        udp_round_trip(nat, host, 5000 + i, Y1, 80)
    assert nat.dropped(udp(hosts[3], 6000, Y1, 80), Side.INSIDE).reason is DropReason.LIMIT_REACHED
    assert nat.drops(DropReason.LIMIT_REACHED) == 1


def test_per_host_limit_leaves_other_hosts_alone_and_frees_on_expiry():
    nat = Nat(policy(limits={"max_mappings_per_host": 1}, timeouts={"udp": 120.0}))
    udp_round_trip(nat, A, 5000, Y1, 80)
    assert nat.dropped(udp(A, 5001, Y1, 80), Side.INSIDE).reason is DropReason.LIMIT_REACHED
    udp_round_trip(nat, B, 5000, Y1, 80)
    nat.at(200)
    udp_round_trip(nat, A, 5001, Y1, 80)


# -- port forwards ------------------------------------------------------------------------
@pytest.mark.parametrize("internal_port", [None, 8080], ids=["same_port", "other_port"])
@pytest.mark.parametrize("filtering", list(Dependency), ids=lambda d: d.value)
def test_port_forward_admits_anyone_and_replies_from_the_forwarded_port(filtering, internal_port):
    fwd = PortForward(Protocol.UDP, 2222, A, internal_port)
    nat = Nat(policy(filtering=filtering, forwards=(fwd,)))
    for remote in (Y1, Y2):
        got = nat.translated_in(udp(remote, 4000, X1, 2222, b"knock"))
        assert dst_of(got) == (A, internal_port or 2222)
        reply = nat.translated_out(udp(A, internal_port or 2222, remote, 4000, b"who"))
        assert src_of(reply) == (X1, 2222)
    assert [m.kind for m in nat.mappings()] == ["forward"]


def test_tcp_port_forward_admits_unsolicited_syn():
    nat = Nat(policy(filtering=Dependency.ADDRESS_AND_PORT_DEPENDENT,
                     forwards=(PortForward(Protocol.TCP, 443, A),)))
    assert dst_of(nat.translated_in(tcp(Y1, 4000, X1, 443, flags=SYN))) == (A, 443)
    assert nat.at(10).expire().emits == ()


def test_port_forward_is_never_taken_by_a_dynamic_mapping():
    nat = Nat(policy(forwards=(PortForward(Protocol.UDP, 5000, A, 22),)))
    assert udp_round_trip(nat, B, 5000, Y1, 80)[1] != 5000


# -- static 1:1 -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make_out, make_in",
    [
        pytest.param(lambda: udp(A, 5000, Y1, 80), lambda: udp(Y1, 80, STATIC_EXT, 5000), id="udp"),
        pytest.param(lambda: tcp(A, 5000, Y1, 80, flags=SYN), lambda: tcp(Y2, 80, STATIC_EXT, 22, flags=SYN),
                     id="tcp"),
        pytest.param(lambda: icmp_echo(A, Y1, 9, 1), lambda: icmp_echo(Y1, STATIC_EXT, 9, 1, reply=True),
                     id="icmp"),
    ],
)
def test_static_nat_rewrites_addresses_only(make_out, make_in):
    nat = Nat(policy(static=(StaticNat(A, STATIC_EXT),), filtering=Dependency.ADDRESS_AND_PORT_DEPENDENT))
    original = make_out()
    out = nat.translated_out(original)
    assert src_of(out) == (STATIC_EXT, src_of(original)[1])
    inbound = make_in()
    back = nat.translated_in(inbound)
    assert dst_of(back) == (A, dst_of(inbound)[1])
    assert STATIC_EXT in nat.engine.external_addresses


def test_forward_replies_keep_the_forward_when_the_host_also_has_a_static_entry():
    fwd = PortForward(Protocol.TCP, 8022, A, 22)
    nat = Nat(policy(static=(StaticNat(A, STATIC_EXT),), forwards=(fwd,)))
    assert dst_of(nat.translated_in(tcp(Y1, 4000, X1, 8022, flags=SYN))) == (A, 22)
    assert src_of(nat.translated_out(tcp(A, 22, Y1, 4000, flags=SYN | 0x10))) == (X1, 8022)
    assert src_of(nat.translated_out(udp(A, 5000, Y1, 80))) == (STATIC_EXT, 5000)  # new flows: static


# -- determinism ------------------------------------------------------------------------------
def _script(seed: int):
    nat = Nat(policy(pooling=Pooling.ARBITRARY, port_assignment=PortAssignment.RANDOM,
                     mapping=Dependency.ADDRESS_AND_PORT_DEPENDENT, timeouts={"udp": 120.0}), POOL3, seed)
    rng = random.Random(99)
    outputs = []
    for step in range(200):
        nat.at(step * 3.0)
        host, port, remote = rng.choice((A, B)), rng.randrange(5000, 5010), rng.choice((Y1, Y2))
        v = nat.out(udp(host, port, remote, 80))
        outputs.append((type(v).__name__, bytes(getattr(v, "data", b"")), v.events))
        if hasattr(v, "data"):
            outputs.append(nat.into(udp(remote, 80, *src_of(v.data))))
    return outputs, nat.mappings(), nat.engine.counters.snapshot()


def test_same_seed_same_packets_same_outputs_and_tables():
    assert _script(7) == _script(7)


def test_another_seed_gives_other_ports():
    assert _script(7)[1] != _script(8)[1]


# -- reconfigure / set_pool / flush -----------------------------------------------------------
def test_reconfigure_keeps_mappings_when_mapping_behaviour_is_unchanged():
    nat = Nat()
    ext = udp_round_trip(nat, A, 5000, Y1, 80)
    tick = nat.engine.reconfigure(policy(filtering=Dependency.ADDRESS_AND_PORT_DEPENDENT), nat.now)
    assert tick.events == ()
    assert udp_round_trip(nat, A, 5000, Y1, 80) == ext
    assert nat.dropped(udp(Y2, 80, *ext)).reason is DropReason.FILTERED  # the new filtering applies


def test_reconfigure_flushes_dynamic_mappings_when_mapping_behaviour_changes():
    nat = Nat()
    ext = udp_round_trip(nat, A, 5000, Y1, 80)
    tick = nat.engine.reconfigure(policy(mapping=Dependency.ADDRESS_AND_PORT_DEPENDENT), nat.now)
    assert kinds(tick.events) == [EventKind.MAPPINGS_FLUSHED]
    assert nat.mappings() == ()
    assert nat.dropped(udp(Y1, 80, *ext)).reason is DropReason.NO_MAPPING


def test_set_pool_ends_mappings_on_withdrawn_addresses_only():
    nat = Nat(policy(pooling=Pooling.ARBITRARY), POOL3)
    exts = [udp_round_trip(nat, A, 5000 + i, Y1, 80) for i in range(12)]
    keep = POOL3[0]
    tick = nat.engine.set_pool([keep], nat.now)
    gone = [e for e in exts if e[0] != keep]
    assert len(kinds(tick.events)) == len(gone)
    assert {m.external_address for m in nat.mappings()} <= {keep}
    for e in gone:
        assert nat.dropped(udp(Y1, 80, *e)).reason is DropReason.NOT_OURS  # no longer our address
    assert udp_round_trip(nat, B, 7000, Y1, 80)[0] == keep


def test_flush_forgets_mappings_and_held_syns():
    nat = Nat(policy(forwards=(PortForward(Protocol.UDP, 2222, B),)))
    ext = udp_round_trip(nat, A, 5000, Y1, 80)
    nat.dropped(tcp(Y2, 4000, X1, 6000, flags=SYN))
    tick = nat.engine.flush(nat.now)
    assert kinds(tick.events) == [EventKind.MAPPINGS_FLUSHED]
    assert nat.dropped(udp(Y1, 80, *ext)).reason is DropReason.NO_MAPPING
    assert nat.at(10).expire().emits == ()
    assert [m.kind for m in nat.mappings()] == ["forward"]  # static configuration stays
    assert nat.engine.counters.snapshot()["mappings_active"] == 0
