"""IP fragments (RFC 4787 REQ-14): first by ports, later ones by IP id; out-of-order held."""

from __future__ import annotations

import pytest

from enginekit import A, Nat, X1, Y1, fragment, kinds, policy, udp, valid
from natlab.engine import Drop, DropReason, EventKind, Forward, Side
from natlab.packet.headers import to_str

BIG = b"0123456789abcdef" * 40  # 640 bytes: three fragments at mtu 300


def _addresses(data: bytes) -> tuple[str, str]:
    p = valid(data)
    return to_str(p.ip.src), to_str(p.ip.dst)


def _outbound_fragments():
    return fragment(udp(A, 5000, Y1, 53, BIG, ident=0x4242), 300)


def test_fragments_in_order_share_the_first_fragments_translation():
    nat = Nat()
    first, *later = _outbound_fragments()
    assert len(later) == 2
    out = [nat.translated_out(f) for f in (first, *later)]
    assert all(_addresses(o) == (X1, Y1) for o in out)
    assert valid(out[0]).l4.sport == 5000
    assert [valid(o).payload for o in out[1:]] == [valid(f).payload for f in later]


def test_inbound_fragments_reach_the_inside_host():
    nat = Nat()
    nat.translated_out(udp(A, 5000, Y1, 53))
    frags = fragment(udp(Y1, 53, X1, 5000, BIG, ident=0x5151), 300)
    back = [nat.translated_in(f) for f in frags]
    assert all(_addresses(b) == (Y1, A) for b in back)
    assert valid(back[0]).l4.dport == 5000


@pytest.mark.parametrize("order", [(1, 2, 0), (2, 1, 0), (1, 0, 2)], ids=["1-2-0", "2-1-0", "1-0-2"])
def test_later_fragment_arriving_first_is_held_then_released(order):
    nat = Nat()
    frags = _outbound_fragments()
    released = []
    for i in order:
        v = nat.out(frags[i])
        if i == 0:
            assert type(v) is Forward
            released += [e.data for e in v.emits]
            assert all(e.side is Side.OUTSIDE for e in v.emits)
        elif type(v) is Drop:
            assert v.reason is DropReason.FRAGMENT_HELD
        else:
            released.append(v.data)
    assert len(released) == 2
    assert sorted(valid(r).payload for r in released) == sorted(valid(f).payload for f in frags[1:])
    assert all(_addresses(r) == (X1, Y1) for r in released)


def test_held_fragments_expire_when_the_first_never_comes():
    nat = Nat(policy(fragments={"hold": 2.0}))
    _, second, _ = _outbound_fragments()
    assert nat.dropped(second, Side.INSIDE).reason is DropReason.FRAGMENT_HELD
    assert nat.at(1.9).expire().events == ()
    tick = nat.at(2.1).expire()
    assert EventKind.DROPPED in kinds(tick.events)
    assert tick.emits == ()


def test_held_fragments_are_bounded_by_max_held():
    nat = Nat(policy(fragments={"max_held": 2}))
    held = [fragment(udp(A, 5000, Y1, 53, BIG, ident=i), 300)[1] for i in range(3)]
    assert nat.dropped(held[0], Side.INSIDE).reason is DropReason.FRAGMENT_HELD
    assert nat.dropped(held[1], Side.INSIDE).reason is DropReason.FRAGMENT_HELD
    assert nat.dropped(held[2], Side.INSIDE).reason is DropReason.FRAGMENT_OVERFLOW
    assert nat.drops(DropReason.FRAGMENT_OVERFLOW) == 1


def test_translate_off_drops_fragments_disabled():
    nat = Nat(policy(fragments={"translate": False}))
    first, second, _ = _outbound_fragments()
    assert nat.dropped(first, Side.INSIDE).reason is DropReason.FRAGMENTS_DISABLED
    assert nat.dropped(second, Side.INSIDE).reason is DropReason.FRAGMENTS_DISABLED
    assert nat.translated_out(udp(A, 5000, Y1, 53))  # whole packets still pass


def test_out_of_order_off_drops_later_fragment_arriving_first():
    nat = Nat(policy(fragments={"out_of_order": False}))
    first, second, _ = _outbound_fragments()
    assert type(nat.out(second)) is Drop
    assert nat.translated_out(first)
