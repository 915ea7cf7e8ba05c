"""Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): inside to one of our external endpoints."""

from __future__ import annotations

import pytest

from enginekit import ACK, SYN, A, B, Nat, X1, Y1, dst_of, kinds, policy, src_of, tcp, udp, udp_round_trip
from natlab.engine import Dependency, DropReason, EventKind, Hairpinning, Side

EXT, INT, NONE = Hairpinning.EXTERNAL_SOURCE, Hairpinning.INTERNAL_SOURCE, Hairpinning.NONE


def _b_is_mapped(nat: Nat) -> tuple[str, int]:
    """B:6000 talks to Y1 and so owns X1:6000."""
    return udp_round_trip(nat, B, 6000, Y1, 80)


def test_hairpinning_none_drops_hairpin_disabled():
    nat = Nat(policy(hairpinning=NONE))
    xb = _b_is_mapped(nat)
    assert nat.dropped(udp(A, 5000, *xb), Side.INSIDE).reason is DropReason.HAIRPIN_DISABLED
    assert nat.drops(DropReason.HAIRPIN_DISABLED) == 1


@pytest.mark.parametrize(
    "mode, source_seen_by_b",
    [
        pytest.param(EXT, (X1, 5000), id="external_source_presents_x1_external_endpoint"),
        pytest.param(INT, (A, 5000), id="internal_source_keeps_x1_internal_endpoint"),
    ],
)
def test_hairpin_reaches_the_other_inside_host(mode, source_seen_by_b):
    nat = Nat(policy(hairpinning=mode))
    xb = _b_is_mapped(nat)
    got = nat.hairpinned(udp(A, 5000, *xb, b"hi B"))
    assert dst_of(got) == (B, 6000)
    assert src_of(got) == source_seen_by_b
    assert nat.engine.counters.snapshot()["hairpinned"] == 1


def test_hairpin_external_source_reply_goes_back_to_the_sender():
    nat = Nat(policy(hairpinning=EXT))
    xb = _b_is_mapped(nat)
    xa = src_of(nat.hairpinned(udp(A, 5000, *xb)))
    back = nat.hairpinned(udp(B, 6000, *xa))
    assert dst_of(back) == (A, 5000)
    assert src_of(back) == xb


def test_hairpin_works_for_tcp_with_valid_checksums():
    nat = Nat(policy(hairpinning=EXT))
    xb = nat.external_of(tcp(B, 6000, Y1, 443, flags=SYN))
    got = nat.hairpinned(tcp(A, 5000, *xb, flags=SYN))
    assert dst_of(got) == (B, 6000)
    back = nat.hairpinned(tcp(B, 6000, *src_of(got), flags=SYN | ACK))
    assert dst_of(back) == (A, 5000)


@pytest.mark.parametrize(
    "filtering, admitted",
    [
        pytest.param(Dependency.ENDPOINT_INDEPENDENT, True, id="eif_admits_hairpin"),
        pytest.param(Dependency.ADDRESS_DEPENDENT, False, id="adf_filters_hairpin_from_uncontacted_address"),
        pytest.param(Dependency.ADDRESS_AND_PORT_DEPENDENT, False, id="apdf_filters_hairpin_from_uncontacted_endpoint"),
    ],
)
@pytest.mark.parametrize("mode", [EXT, INT], ids=lambda m: m.value)
def test_filtering_applies_to_hairpinned_packets(mode, filtering, admitted):
    nat = Nat(policy(hairpinning=mode, filtering=filtering))
    xb = _b_is_mapped(nat)
    v = nat.out(udp(A, 5000, *xb))
    if admitted:
        assert dst_of(v.data) == (B, 6000)
    else:
        assert v.reason is DropReason.FILTERED
        assert EventKind.FILTERED in kinds(v.events)


@pytest.mark.parametrize("filtering", [Dependency.ADDRESS_DEPENDENT, Dependency.ADDRESS_AND_PORT_DEPENDENT],
                         ids=lambda d: d.value)
def test_hairpin_is_admitted_once_the_target_contacted_the_sender(filtering):
    nat = Nat(policy(hairpinning=EXT, filtering=filtering))
    xa = _b_is_mapped(nat) and udp_round_trip(nat, A, 5000, Y1, 80)
    xb = (X1, 6000)
    assert nat.dropped(udp(B, 6000, *xa), Side.INSIDE).reason is DropReason.FILTERED
    # B's packet was filtered, yet B has now sent to X1':x1': A's packet is admitted (hole punching).
    got = nat.hairpinned(udp(A, 5000, *xb))
    assert dst_of(got) == (B, 6000)
    assert src_of(got) == xa
    back = nat.hairpinned(udp(B, 6000, *xa))
    assert dst_of(back) == (A, 5000)
    assert src_of(back) == xb


# -- hairpin_filtering (REQ-8 on hairpinned packets) -------------------------------------
@pytest.mark.parametrize("target", ["own", "neighbour"])
@pytest.mark.parametrize("mode, delivered", [("apply", False), ("bypass", True)])
def test_hairpin_filtering_apply_filters_and_bypass_admits(target, mode, delivered):
    from natlab.engine import HairpinFiltering

    nat = Nat(policy(filtering=Dependency.ADDRESS_AND_PORT_DEPENDENT, hairpinning=EXT,
                     hairpin_filtering=HairpinFiltering(mode)))
    xa = udp_round_trip(nat, A, 5000, Y1, 80)
    xb = udp_round_trip(nat, B, 6000, Y1, 80)
    sender, sport = (A, 5001) if target == "own" else (A, 5000)
    to = xa if target == "own" else xb
    v = nat.out(udp(sender, sport, *to))
    if delivered:
        assert type(v).__name__ == "Hairpin"
    else:
        assert v.reason is DropReason.FILTERED
