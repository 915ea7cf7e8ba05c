"""Mapping (RFC 4787 REQ-1), filtering (REQ-8) and address pooling (REQ-2), with return paths."""

from __future__ import annotations

import pytest

from enginekit import (
    POOL3, A, B, Nat, X1, Y1, Y2, dst_of, kinds, policy, src_of, udp, udp_round_trip,
)
from natlab.engine import Dependency, DropReason, EventKind, Pooling, PortAssignment, PortRange, Side

EIM, ADM, APDM = Dependency.ENDPOINT_INDEPENDENT, Dependency.ADDRESS_DEPENDENT, Dependency.ADDRESS_AND_PORT_DEPENDENT


# -- mapping (REQ-1) -----------------------------------------------------------------
@pytest.mark.parametrize(
    "mapping, same_for_new_port, same_for_new_address",
    [
        pytest.param(EIM, True, True, id="eim_keeps_mapping_across_destinations"),
        pytest.param(ADM, True, False, id="adm_same_for_same_address_new_for_new_address"),
        pytest.param(APDM, False, False, id="apdm_gives_new_port_per_destination"),
    ],
)
def test_mapping_reuse_by_dependency(mapping, same_for_new_port, same_for_new_address):
    nat = Nat(policy(mapping=mapping))
    first = udp_round_trip(nat, A, 5000, Y1, 3478)
    new_port = udp_round_trip(nat, A, 5000, Y1, 3479)
    new_address = udp_round_trip(nat, A, 5000, Y2, 3478)
    assert (new_port == first) is same_for_new_port
    assert (new_address == first) is same_for_new_address
    assert len(nat.mappings()) == 1 + (not same_for_new_port) + (not same_for_new_address)


@pytest.mark.parametrize("mapping", [EIM, ADM, APDM], ids=lambda d: d.value)
def test_mapping_is_stable_for_the_same_flow(mapping):
    nat = Nat(policy(mapping=mapping))
    first = nat.external_of(udp(A, 5000, Y1, 3478))
    for t in (1.0, 2.0, 3.0):
        assert nat.at(t).external_of(udp(A, 5000, Y1, 3478)) == first
    assert len(nat.mappings()) == 1


@pytest.mark.parametrize("mapping", [EIM, ADM, APDM], ids=lambda d: d.value)
def test_two_hosts_never_share_an_external_endpoint(mapping):
    nat = Nat(policy(mapping=mapping))
    a = udp_round_trip(nat, A, 5000, Y1, 3478)
    b = udp_round_trip(nat, B, 5000, Y1, 3478)
    assert a != b


def test_mapping_created_event_names_the_endpoints():
    nat = Nat()
    v = nat.out(udp(A, 5000, Y1, 80))
    assert kinds(v.events) == [EventKind.MAPPING_CREATED]
    assert v.events[0].internal == f"{A}:5000"
    assert v.events[0].external == f"{X1}:5000"


# -- filtering (REQ-8) ---------------------------------------------------------------
EIF, ADF, APDF = EIM, ADM, APDM
FILTER_CASES = [
    # (filtering, remote that probes, admitted?)
    pytest.param(EIF, Y1, 80, True, id="eif_admits_the_contacted_endpoint"),
    pytest.param(EIF, Y1, 81, True, id="eif_admits_new_port_of_contacted_address"),
    pytest.param(EIF, Y2, 80, True, id="eif_admits_any_remote_once_mapped"),
    pytest.param(ADF, Y1, 80, True, id="adf_admits_the_contacted_endpoint"),
    pytest.param(ADF, Y1, 81, True, id="adf_admits_new_port_from_contacted_address"),
    pytest.param(ADF, Y2, 80, False, id="adf_refuses_new_address"),
    pytest.param(APDF, Y1, 80, True, id="apdf_admits_the_exact_endpoint"),
    pytest.param(APDF, Y1, 81, False, id="apdf_refuses_new_port"),
    pytest.param(APDF, Y2, 80, False, id="apdf_refuses_new_address"),
]


@pytest.mark.parametrize("filtering, remote, rport, admitted", FILTER_CASES)
def test_filtering_by_dependency(filtering, remote, rport, admitted):
    nat = Nat(policy(filtering=filtering))
    ext = nat.external_of(udp(A, 5000, Y1, 80))
    probe = udp(remote, rport, ext[0], ext[1], b"hello")
    if admitted:
        back = nat.translated_in(probe)
        assert dst_of(back) == (A, 5000)
        assert src_of(back) == (remote, rport)
    else:
        drop = nat.dropped(probe)
        assert drop.reason is DropReason.FILTERED
        assert kinds(drop.events) == [EventKind.FILTERED]
        assert drop.events[0].remote == f"{remote}:{rport}"
        assert nat.drops(DropReason.FILTERED) == 1


@pytest.mark.parametrize("filtering", [EIF, ADF, APDF], ids=lambda d: d.value)
def test_inbound_without_mapping_is_dropped_no_mapping(filtering):
    nat = Nat(policy(filtering=filtering))
    drop = nat.dropped(udp(Y1, 80, X1, 5000))
    assert drop.reason is DropReason.NO_MAPPING
    assert nat.drops(DropReason.NO_MAPPING) == 1


@pytest.mark.parametrize("filtering", [ADF, APDF], ids=lambda d: d.value)
def test_filtered_remote_is_admitted_after_the_host_contacts_it(filtering):
    nat = Nat(policy(filtering=filtering))
    ext = nat.external_of(udp(A, 5000, Y1, 80))
    assert nat.dropped(udp(Y2, 80, *ext)).reason is DropReason.FILTERED
    assert nat.external_of(udp(A, 5000, Y2, 80)) == ext  # EIM: same mapping
    assert dst_of(nat.translated_in(udp(Y2, 80, *ext))) == (A, 5000)


# -- pooling (REQ-2) -----------------------------------------------------------------
def _addresses_used(nat: Nat, host: str, n: int) -> set[str]:
    return {udp_round_trip(nat, host, 6000 + i, Y1, 80)[0] for i in range(n)}


def test_paired_pooling_keeps_one_external_address_per_host():
    nat = Nat(policy(pooling=Pooling.PAIRED), pool=POOL3)
    for host in (A, B):
        assert len(_addresses_used(nat, host, 20)) == 1


def test_paired_pooling_holds_across_destinations_and_mapping_behaviours():
    nat = Nat(policy(pooling=Pooling.PAIRED, mapping=APDM), pool=POOL3)
    used = {udp_round_trip(nat, A, 6000, y, p)[0] for y in (Y1, Y2) for p in (80, 81, 82)}
    assert len(used) == 1


def test_arbitrary_pooling_spreads_mappings_over_the_pool():
    nat = Nat(policy(pooling=Pooling.ARBITRARY), pool=POOL3)
    used = _addresses_used(nat, A, 30)
    assert len(used) > 1
    assert used <= set(POOL3)


TINY = dict(port_range=PortRange(2000, 2001), port_parity=False, port_assignment=PortAssignment.SEQUENTIAL)


def test_soft_paired_falls_back_when_paired_address_is_exhausted():
    nat = Nat(policy(pooling=Pooling.SOFT_PAIRED, **TINY), pool=POOL3)
    first = udp_round_trip(nat, A, 6000, Y1, 80)
    second = udp_round_trip(nat, A, 6001, Y1, 80)
    assert first[0] == second[0]
    third = udp_round_trip(nat, A, 6002, Y1, 80)
    assert third[0] != first[0]
    assert 2000 <= third[1] <= 2001


def test_paired_drops_port_exhausted_when_its_address_is_full():
    nat = Nat(policy(pooling=Pooling.PAIRED, **TINY), pool=POOL3)
    udp_round_trip(nat, A, 6000, Y1, 80)
    udp_round_trip(nat, A, 6001, Y1, 80)
    drop = nat.dropped(udp(A, 6002, Y1, 80), side=Side.INSIDE)
    assert drop.reason is DropReason.PORT_EXHAUSTED
    assert nat.drops(DropReason.PORT_EXHAUSTED) == 1

