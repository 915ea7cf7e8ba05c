"""The session cache's bookkeeping, driven with a manual clock: what is installed when, under
which mark, what the counters fold into, and when a mark may be given out again."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from natlab.datapaths.kernelcache.cache import (MARGIN, PROBE_AT, SETTLE, UNLINK_SAFE, UNLINK_SLACK, Cache,
                                              control_key, flow_of, wire_key)
from natlab.engine.fastpath import FastEntry
from natlab.engine.types import Side
from natlab.packet import build

EMIT_MARK = 0x4E4C
A, Y, X = "192.168.1.2", "203.0.113.100", "203.0.113.1"


def ip(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


def out_entry(expires: float = 11.0, sport: int = 5000, proto: int = 17) -> FastEntry:
    return FastEntry(Side.INSIDE, proto, ip(A), sport, ip(Y), 7000, ip(X), 40000 + sport, ip(Y), 7000, expires)


def in_entry(expires: float = 11.0, sport: int = 5000, proto: int = 17) -> FastEntry:
    return FastEntry(Side.OUTSIDE, proto, ip(Y), 7000, ip(X), 40000 + sport, ip(Y), 7000, ip(A), sport, expires)


def installed(cache: Cache, *entries: FastEntry, now: float = 10.0):
    for entry in entries:
        cache.offer(entry, now)
        cache.offer(entry, now)
    batch = cache.take(now, 1000)
    cache.installed(batch, now)
    return batch


def test_a_key_is_installed_the_second_time_it_is_offered_within_a_quantum():
    cache = Cache(quantum=1.0)
    cache.offer(out_entry(), 10.0)
    assert cache.take(10.0, 10) == [] and cache.stats["first_offers"] == 1
    cache.offer(out_entry(), 10.5)
    [item] = cache.take(10.5, 10)
    assert item.entry == out_entry()


def test_a_key_offered_once_per_several_quanta_is_never_installed():
    cache = Cache(quantum=1.0)
    for t in (10.0, 13.0, 16.0):
        cache.offer(out_entry(expires=t + 1), t)
        assert cache.take(t, 10) == []


def test_the_kernel_timeout_ends_a_margin_before_the_entry_expires():
    cache = Cache(quantum=1.0)
    [item] = installed(cache, out_entry(expires=11.0))
    assert item.timeout_ms == int((1.0 - MARGIN) * 1000)


def test_an_entry_with_almost_no_life_left_is_not_installed():
    cache = Cache(quantum=1.0)
    assert installed(cache, out_entry(expires=10.03)) == []


def test_marks_are_unique_and_never_the_emit_mark():
    cache = Cache(quantum=1.0, reserved=(3,))
    batch = installed(cache, *(out_entry(sport=s) for s in range(1, 6)))
    marks = [i.mark for i in batch]
    assert len(set(marks)) == 5 and 3 not in marks and 0 not in marks
    assert EMIT_MARK not in [i.mark for i in installed(Cache(quantum=1.0, reserved=(EMIT_MARK,)), out_entry())]


def test_a_key_still_in_the_kernel_is_not_installed_again():
    cache = Cache(quantum=1.0)
    installed(cache, out_entry(expires=11.0))
    assert installed(cache, out_entry(expires=11.5), now=10.5) == []
    after = 11.0 + SETTLE + 0.001
    [again] = installed(cache, out_entry(expires=after + 1), now=after)
    assert again.entry.expires == after + 1


def test_take_leaves_the_rest_pending():
    cache = Cache(quantum=1.0)
    for s in range(1, 6):
        cache.offer(out_entry(sport=s), 10.0)
        cache.offer(out_entry(sport=s), 10.0)
    assert len(cache.take(10.0, 2)) == 2 and cache.pending == 3


def test_the_counters_fold_only_what_is_new_stamped_with_the_last_hit():
    cache = Cache(quantum=1.0)
    [item] = installed(cache, out_entry(expires=11.0))
    folds, _ = cache.account({item.mark: (10, 1000, 10.3)}, 10.4, 10.4)
    assert [(f.packets, f.nbytes, f.last_seen) for f in folds] == [(10, 1000, 10.3)]
    folds, _ = cache.account({item.mark: (10, 1000, 10.3)}, 10.6, 10.6)
    assert folds == []
    folds, _ = cache.account({item.mark: (15, 1500, 10.9)}, 12.0, 12.0)
    assert [(f.packets, f.nbytes, f.last_seen) for f in folds] == [(5, 500, 10.9)]
    assert cache.stats["hits"] == 15 and cache.stats["hit_bytes"] == 1500


def test_a_last_hit_is_never_folded_past_the_entry_expiry_or_the_reading():
    cache = Cache(quantum=1.0)
    [item] = installed(cache, out_entry(expires=11.0))
    [fold], _ = cache.account({item.mark: (1, 10, 11.5)}, 12.0, 12.0)
    assert fold.last_seen == 11.0
    [late] = installed(cache, out_entry(expires=13.0, sport=1), now=12.0)
    [fold], _ = cache.account({late.mark: (1, 10, 12.6)}, 12.5, 12.5)
    assert fold.last_seen == 12.5


def test_an_entry_retires_only_once_its_element_had_surely_gone_when_the_reading_began():
    cache = Cache(quantum=1.0)
    [item] = installed(cache, out_entry(expires=11.0))
    ends = 10.0 + item.timeout_ms / 1000 + SETTLE
    assert cache.next_due() == pytest.approx(ends)
    _, retired = cache.account({item.mark: (1, 10, 10.5)}, ends + 0.01, ends - 0.001)
    assert retired == [] and len(cache) == 1
    _, retired = cache.account({item.mark: (1, 10, 10.5)}, ends + 0.01, ends)
    assert [r.mark for r in retired] == [item.mark] and len(cache) == 0 and cache.next_due() is None


def test_a_retired_mark_is_given_out_again_only_after_release():
    cache = Cache(quantum=1.0)
    [first] = installed(cache, out_entry(expires=11.0))
    _, retired = cache.account({}, 12.0, 12.0)
    [second] = installed(cache, out_entry(expires=13.0, sport=1), now=12.0)
    assert second.mark != first.mark
    cache.release(retired)
    [third] = installed(cache, out_entry(expires=13.0, sport=2), now=12.0)
    assert third.mark == first.mark


def test_a_key_just_retired_is_installed_at_its_first_offer():
    cache = Cache(quantum=1.0)
    installed(cache, out_entry(expires=11.0))
    cache.account({}, 11.1, 11.1)
    cache.offer(out_entry(expires=12.1), 11.1)
    assert len(cache.take(11.1, 10)) == 1


def test_a_failed_batch_gives_its_marks_back():
    cache = Cache(quantum=1.0)
    cache.offer(out_entry(), 10.0)
    cache.offer(out_entry(), 10.0)
    batch = cache.take(10.0, 10)
    cache.failed(batch)
    assert [i.mark for i in installed(cache, out_entry(sport=9))] == [batch[0].mark]


def test_a_fin_or_rst_names_both_directions_of_its_connection_either_way():
    for side, key in ((Side.INSIDE, out_entry(proto=6).key), (Side.OUTSIDE, in_entry(proto=6).key)):
        cache = Cache(quantum=1.0)
        installed(cache, out_entry(proto=6), in_entry(proto=6), out_entry(proto=6, sport=9))
        victims = cache.close(key, side, 10.2)
        assert {v.entry.side for v in victims} == {Side.INSIDE, Side.OUTSIDE}
        assert {flow_of(v.entry) for v in victims} == {flow_of(out_entry(proto=6))}


def test_unlinked_entries_retire_at_the_next_reading():
    cache = Cache(quantum=1.0)
    installed(cache, out_entry(proto=6), in_entry(proto=6))
    victims = cache.close(out_entry(proto=6).key, Side.INSIDE, 10.2)
    cache.unlinked(victims, 10.21, closed=True)
    _, retired = cache.account({}, 10.22, 10.22)
    assert len(retired) == 2 and len(cache) == 0


def test_an_entry_about_to_end_is_left_to_expire_rather_than_unlinked():
    cache = Cache(quantum=1.0)
    installed(cache, out_entry(proto=6, expires=11.0))
    assert cache.close(out_entry(proto=6).key, Side.INSIDE, 10.985) == []


def test_a_fin_drops_pending_entries_of_its_key():
    cache = Cache(quantum=1.0)
    cache.offer(out_entry(proto=6), 10.0)
    cache.offer(out_entry(proto=6), 10.0)
    cache.close(out_entry(proto=6).key, Side.INSIDE, 10.0)
    assert cache.take(10.0, 10) == []


def test_clear_folds_the_last_counts_and_forgets_everything_pending_too():
    cache = Cache(quantum=1.0)
    [a, b] = installed(cache, out_entry(), in_entry())
    cache.offer(out_entry(sport=7), 10.0)
    cache.offer(out_entry(sport=7), 10.0)
    folds = cache.clear({a.mark: (3, 30, 10.4), b.mark: (0, 0, 10.0)}, 10.5)
    assert [(f.entry, f.packets) for f in folds] == [(a.entry, 3)]
    assert len(cache) == 0 and cache.pending == 0 and cache.next_due() is None
    assert cache.stats["flushes"] == 1
    [again] = installed(cache, out_entry(expires=12.0), now=10.5)
    assert again.mark == 1


def test_beyond_its_capacity_the_cache_refuses_and_counts():
    cache = Cache(quantum=1.0, capacity=2)
    assert len(installed(cache, *(out_entry(sport=s) for s in range(1, 5)))) == 2
    assert cache.stats["full"] == 2


def test_a_quantum_must_be_positive():
    with pytest.raises(ValueError):
        Cache(quantum=0)


@pytest.mark.parametrize("flags,expected", [(0x02, True), (0x01 | 0x10, True), (0x04, True),
                                            (0x10, False), (0x18, False)])
def test_only_tcp_segments_with_syn_fin_or_rst_are_control(flags, expected):
    pkt = build.tcp(A, 5000, Y, 443, flags=flags)
    assert (control_key(pkt) == (6, ip(A), 5000, ip(Y), 443)) is expected


def test_udp_and_short_packets_are_never_control():
    assert control_key(build.udp(A, 5000, Y, 443, b"x" * 40)) is None
    assert control_key(b"\x45" + b"\0" * 10) is None


def test_the_outbound_and_inbound_entry_of_a_session_share_a_flow():
    assert flow_of(out_entry()) == flow_of(in_entry())
    assert flow_of(out_entry()) != flow_of(dataclasses.replace(in_entry(), sport=7001))


def test_an_entry_is_unlinked_shortly_before_its_end_and_its_key_then_installs_at_first_offer():
    cache = Cache(quantum=1.0)
    [item] = installed(cache, out_entry(expires=11.0))
    assert cache.next_unlink() == pytest.approx(11.0 - MARGIN - UNLINK_SLACK)
    assert cache.unlink_due(10.9) == []
    [due] = cache.unlink_due(cache.next_unlink())
    assert due.mark == item.mark
    cache.unlinked([due], 10.975)
    cache.offer(out_entry(expires=11.975), 10.976)
    [again] = cache.take(10.976, 10)
    assert again.entry.expires == 11.975 and again.mark != item.mark


def test_an_unlink_the_loop_came_too_late_for_is_left_to_the_kernel():
    cache = Cache(quantum=1.0)
    installed(cache, out_entry(expires=11.0))
    assert cache.unlink_due(11.0 - MARGIN - UNLINK_SAFE + 0.001) == []


def test_a_closed_connection_is_not_installed_again_at_its_first_offer():
    cache = Cache(quantum=5.0)
    installed(cache, out_entry(proto=6, expires=15.0))
    cache.unlinked(cache.close(out_entry(proto=6).key, Side.INSIDE, 10.2), 10.21, closed=True)
    cache.offer(out_entry(proto=6, expires=16.0), 11.0)
    assert cache.take(11.0, 10) == [] and cache.stats["closed"] == 1


def test_a_probe_is_armed_three_quarters_into_an_entry_and_lasts_until_its_unlink():
    cache = Cache(quantum=1.0)
    [item] = installed(cache, out_entry(expires=11.0))
    end = 11.0 - MARGIN
    assert cache.next_probe() == pytest.approx(10.0 + PROBE_AT * (end - 10.0))
    assert cache.probe_due(10.5) == []
    at = cache.next_probe()
    [(inst, left)] = cache.probe_due(at)
    assert inst.mark == item.mark and left == int((end - UNLINK_SLACK - at) * 1000)


def test_the_probes_packet_renews_the_entry_in_place_under_the_same_mark():
    cache = Cache(quantum=1.0)
    [item] = installed(cache, out_entry(expires=11.0))
    [(inst, _)] = cache.probe_due(10.8)
    cache.probed([inst])
    cache.offer(out_entry(expires=11.8), 10.8)
    assert cache.pending == 0 and cache.renewals == 1
    [renewal] = cache.take_renewals(10.8)
    assert renewal.mark == item.mark and renewal.entry.expires == 11.8
    assert renewal.timeout_ms == int((11.8 - 10.8 - MARGIN) * 1000)
    cache.renewed([renewal], 10.801)
    assert cache.unlink_due(11.0 - MARGIN - UNLINK_SLACK + 0.001) == []  # the old end no longer counts
    assert cache.next_probe() > 11.0 and cache.stats["renewed"] == 1


def test_an_entry_without_a_probe_armed_or_with_another_rewrite_is_not_renewed():
    cache = Cache(quantum=1.0)
    installed(cache, out_entry(expires=11.0))
    cache.offer(out_entry(expires=11.8), 10.8)  # no probe armed: an early packet of the burst
    assert cache.renewals == 0
    [(inst, _)] = cache.probe_due(10.8)
    cache.probed([inst])
    other = dataclasses.replace(out_entry(expires=11.8), new_sport=1)
    cache.offer(other, 10.8)
    assert cache.renewals == 0


def test_a_renewal_too_close_to_the_kernels_end_is_left_to_end():
    cache = Cache(quantum=1.0)
    installed(cache, out_entry(expires=11.0))
    [(inst, _)] = cache.probe_due(10.8)
    cache.probed([inst])
    cache.offer(out_entry(expires=11.99), 10.985)
    assert cache.take_renewals(10.985) == []


def test_the_wire_key_is_the_key_of_the_entry_the_engine_offers():
    import random

    from natlab.engine import Engine, Policy

    engine = Engine(Policy(), ("203.0.113.1",), random.Random(1))
    out = build.udp(A, 5000, Y, 7000, b"x")
    verdict = engine.process(out, Side.INSIDE, 10.0)
    entry = engine.fast_entry(out, Side.INSIDE, 10.0, 1.0)
    assert entry is not None and wire_key(out, Side.INSIDE) == entry.key
    src = int(ipaddress.IPv4Address(".".join(str(b) for b in verdict.data[12:16])))
    back = build.udp(Y, 7000, str(ipaddress.IPv4Address(src)), int.from_bytes(verdict.data[20:22], "big"), b"y")
    engine.process(back, Side.OUTSIDE, 10.1)
    assert wire_key(back, Side.OUTSIDE) == engine.fast_entry(back, Side.OUTSIDE, 10.1, 1.0).key


def test_an_icmp_echo_keys_on_its_identifier_the_way_the_engine_does():
    request = build.icmp_echo(A, Y, 77, 1)
    assert wire_key(request, Side.INSIDE) == (1, ip(A), 77, ip(Y), 0)
    assert wire_key(request, Side.OUTSIDE) is None  # a request from outside: no entry
    reply = build.icmp_echo(Y, X, 1077, 1, reply=True)
    assert wire_key(reply, Side.OUTSIDE) == (1, ip(Y), 0, ip(X), 1077)


def test_the_first_packet_of_a_flow_is_not_worth_asking_the_engine_about():
    cache = Cache(quantum=1.0)
    key = out_entry().key
    assert cache.wants(key, 10.0) is False and cache.stats["first_offers"] == 1
    assert cache.wants(key, 10.2) is True
    cache.offer(out_entry(), 10.2)
    [item] = cache.take(10.2, 10)
    cache.installed([item], 10.2)
    assert cache.wants(key, 10.3) is False  # cached: its packets come here only in a burst
