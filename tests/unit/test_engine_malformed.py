"""Malformed input is a counted Drop("malformed"), never an exception; random bytes always get a verdict."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enginekit import SYN, A, Nat, X1, Y1, icmp_echo, icmp_error, policy, tcp, udp
from natlab.engine import Drop, DropReason, Forward, Hairpin, Side, SynResponse

GOOD_UDP = udp(A, 5000, Y1, 53, b"payload")


def _set(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value):]


def _with_total(data: bytes, total: int) -> bytes:
    return _set(data, 2, total.to_bytes(2, "big"))


MALFORMED = [
    pytest.param(b"", id="empty"),
    pytest.param(GOOD_UDP[:19], id="truncated_ip_header"),
    pytest.param(_set(GOOD_UDP, 0, b"\x44"), id="ihl_below_5"),
    pytest.param(_set(GOOD_UDP, 0, b"\x4f"), id="ihl_beyond_total_length"),
    pytest.param(_with_total(GOOD_UDP, len(GOOD_UDP) + 1), id="total_length_beyond_data"),
    pytest.param(_with_total(GOOD_UDP, 12), id="total_length_below_header"),
    pytest.param(_set(GOOD_UDP, 0, b"\x65"), id="version_6"),
    pytest.param(_with_total(GOOD_UDP, 24)[:24], id="truncated_udp_header"),
    pytest.param(_with_total(tcp(A, 5000, Y1, 80, flags=SYN), 30)[:30], id="truncated_tcp_header"),
    pytest.param(_with_total(icmp_echo(A, Y1, 1, 1), 24)[:24], id="truncated_icmp_header"),
]


@pytest.mark.parametrize("side", list(Side), ids=lambda s: s.value)
@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_packets_are_dropped_and_counted(data, side):
    nat = Nat()
    drop = nat.dropped(data, side)
    assert drop.reason is DropReason.MALFORMED
    assert nat.drops(DropReason.MALFORMED) == 1


@pytest.mark.parametrize("keep", [20 + 8 + 10, 20 + 8 + 20 + 4], ids=["quote_ip_header_cut", "quote_l4_cut"])
def test_icmp_error_with_truncated_quote_is_malformed(keep):
    nat = Nat()
    sent = nat.translated_out(udp(A, 5000, Y1, 53))
    err = icmp_error(sent, src=Y1, type=3, code=3)
    cut = _with_total(err, keep)[:keep]
    assert nat.dropped(cut).reason is DropReason.MALFORMED


def test_unsupported_protocol_is_dropped_and_counted():
    from natlab.packet import build

    nat = Nat()
    gre = build.ipv4(A, Y1, 47, b"\x00" * 8)
    assert nat.dropped(gre, Side.INSIDE).reason is DropReason.UNSUPPORTED_PROTOCOL


# -- hypothesis: whatever comes in, a verdict comes out ---------------------------------------
SEEDS = [
    udp(A, 5000, Y1, 53, b"q"), udp(Y1, 53, X1, 5000, b"a"),
    tcp(A, 5000, Y1, 80, flags=SYN), tcp(Y1, 80, X1, 5000, flags=SYN),
    icmp_echo(A, Y1, 7, 1), icmp_echo(Y1, X1, 7, 1, reply=True),
    icmp_error(udp(X1, 5000, Y1, 53), src=Y1, type=3, code=3),
    icmp_error(udp(Y1, 53, A, 5000), src=A, type=3, code=3),
]
VERDICTS = (Forward, Hairpin, Drop)


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for at, value in edits:
        buf[at % len(buf)] = value
    return bytes(buf[: max(0, len(buf) - cut)])


def _engine_with_state() -> Nat:
    nat = Nat(policy(tcp={"unsolicited_syn": SynResponse.ICMP}))
    nat.translated_out(udp(A, 5000, Y1, 53))
    nat.translated_out(tcp(A, 5000, Y1, 80, flags=SYN))
    nat.translated_out(icmp_echo(A, Y1, 7, 1))
    return nat


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120), st.sampled_from(list(Side)))
def test_random_bytes_always_get_a_verdict(data, side):
    nat = _engine_with_state()
    assert isinstance(nat.engine.process(data, side, 1.0), VERDICTS)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    st.integers(0, 30),
    st.sampled_from(list(Side)),
)
def test_mutated_packets_always_get_a_verdict(seed, edits, cut, side):
    nat = _engine_with_state()
    data = _mutate(seed, edits, cut)
    assert isinstance(nat.engine.process(data, side, 1.0), VERDICTS)
    nat.at(10.0).expire()  # whatever was held (SYNs, fragments) is answered or dropped without raising
