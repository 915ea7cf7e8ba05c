"""Timers and refresh: UDP (RFC 4787 REQ-5, REQ-6), TCP (RFC 5382 REQ-5), ICMP (RFC 5508 REQ-1).

Each check looks just before (t - EPS) and just after (t + EPS) the deadline, through
``mappings(now)`` and through an inbound packet (which must find no mapping once expired).
"""

from __future__ import annotations

import pytest

from enginekit import ACK, FIN, RST, SYN, SYNACK, A, Nat, X1, Y1, icmp_echo, kinds, policy, tcp, udp
from natlab.engine import DropReason, EventKind, Forward, Refresh

EPS = 0.01


def alive(nat: Nat, t: float) -> bool:
    return bool(nat.at(t).mappings())


def assert_lives_until(nat: Nat, deadline: float) -> None:
    assert alive(nat, deadline - EPS), f"mapping gone before {deadline}"
    assert not alive(nat, deadline + EPS), f"mapping still there after {deadline}"


# -- UDP ---------------------------------------------------------------------------
@pytest.mark.parametrize("udp_timeout", [120.0, 300.0], ids=["2min", "5min"])
def test_udp_mapping_lives_udp_seconds_after_last_outbound_packet(udp_timeout):
    nat = Nat(policy(timeouts={"udp": udp_timeout}))
    nat.translated_out(udp(A, 5000, Y1, 80))
    nat.at(1).translated_in(udp(Y1, 80, X1, 5000))
    nat.at(50).translated_out(udp(A, 5000, Y1, 80))
    assert_lives_until(nat, 50 + udp_timeout)
    assert nat.dropped(udp(Y1, 80, X1, 5000)).reason is DropReason.NO_MAPPING


def test_udp_expiry_reports_an_event_and_counts():
    nat = Nat(policy(timeouts={"udp": 120.0}))
    nat.translated_out(udp(A, 5000, Y1, 80))
    deadline = nat.engine.next_deadline()
    assert deadline is not None and deadline <= 120.0
    assert nat.at(119).expire().events == ()
    tick = nat.at(120 + EPS).expire()
    assert kinds(tick.events) == [EventKind.MAPPING_EXPIRED]
    assert nat.engine.counters.snapshot()["mappings_expired"] == 1
    assert nat.engine.counters.snapshot()["mappings_active"] == 0


def test_udp_unreplied_timer_applies_before_any_reply():
    nat = Nat(policy(timeouts={"udp": 300.0, "udp_unreplied": 30.0}))
    nat.translated_out(udp(A, 5000, Y1, 80))
    nat.at(10).translated_out(udp(A, 5000, Y1, 80))
    assert_lives_until(nat, 10 + 30)


def test_udp_full_timer_applies_once_replied():
    nat = Nat(policy(timeouts={"udp": 300.0, "udp_unreplied": 30.0}))
    nat.translated_out(udp(A, 5000, Y1, 80))
    nat.at(1).translated_in(udp(Y1, 80, X1, 5000))
    nat.at(2).translated_out(udp(A, 5000, Y1, 80))
    assert_lives_until(nat, 2 + 300)


REFRESH_CASES = [
    # refresh, direction of the packet at t=100, does it extend the mapping?
    pytest.param(Refresh.OUTBOUND, "out", True, id="outbound_refresh_extends_on_outbound"),
    pytest.param(Refresh.OUTBOUND, "in", False, id="outbound_refresh_ignores_inbound"),
    pytest.param(Refresh.INBOUND, "out", False, id="inbound_refresh_ignores_outbound"),
    pytest.param(Refresh.INBOUND, "in", True, id="inbound_refresh_extends_on_inbound"),
    pytest.param(Refresh.BOTH, "out", True, id="both_extends_on_outbound"),
    pytest.param(Refresh.BOTH, "in", True, id="both_extends_on_inbound"),
]


@pytest.mark.parametrize("refresh, direction, extends", REFRESH_CASES)
def test_refresh_direction(refresh, direction, extends):
    nat = Nat(policy(refresh=refresh, timeouts={"udp": 120.0}))
    nat.translated_out(udp(A, 5000, Y1, 80))
    nat.at(1).translated_in(udp(Y1, 80, X1, 5000))
    if direction == "out":
        nat.at(100).translated_out(udp(A, 5000, Y1, 80))
    else:
        nat.at(100).translated_in(udp(Y1, 80, X1, 5000))
    # Without the t=100 packet the mapping ends at 120 (first packet) or 121 (the reply).
    if extends:
        assert_lives_until(nat, 100 + 120)
    else:
        assert not alive(nat, 121 + EPS)


# -- TCP (RFC 5382) ------------------------------------------------------------------
TRANS, EST = 240.0, 7440.0


def out(nat, flags, t):
    return nat.at(t).translated_out(tcp(A, 5000, Y1, 80, flags=flags))


def inn(nat, flags, t):
    return nat.at(t).translated_in(tcp(Y1, 80, X1, 5000, flags=flags))


def test_tcp_syn_gets_the_transitory_timer():
    nat = Nat()
    out(nat, SYN, 0)
    assert_lives_until(nat, TRANS)


def test_tcp_handshake_gets_the_established_timer():
    nat = Nat()
    out(nat, SYN, 0)
    inn(nat, SYNACK, 1)
    out(nat, ACK, 2)
    assert_lives_until(nat, 2 + EST)


def test_tcp_syn_and_syn_ack_give_the_established_timer_when_inbound_refreshes():
    nat = Nat(policy(refresh=Refresh.BOTH))
    out(nat, SYN, 0)
    inn(nat, SYNACK, 1)
    assert_lives_until(nat, 1 + EST)


def _established(nat: Nat, idle_until: float) -> None:
    out(nat, SYN, 0)
    inn(nat, SYNACK, 1)
    out(nat, ACK, 2)
    out(nat, ACK, idle_until)  # some data later on; the engine ages its timers here


CLOSE_CASES = [
    pytest.param(Refresh.OUTBOUND, 10, id="fin_both_ways_soon_after_handshake"),
    pytest.param(Refresh.OUTBOUND, 1000, id="fin_both_ways_after_long_established"),
    pytest.param(Refresh.BOTH, 1000, id="fin_both_ways_after_long_established_refresh_both"),
]


@pytest.mark.parametrize("refresh, t", CLOSE_CASES)
def test_tcp_fin_both_ways_gets_the_transitory_timer(refresh, t):
    nat = Nat(policy(refresh=refresh))
    _established(nat, t)
    out(nat, FIN | ACK, t + 1)
    inn(nat, FIN | ACK, t + 2)
    out(nat, ACK, t + 3)
    assert_lives_until(nat, t + 3 + TRANS)


RST_CASES = [
    pytest.param(Refresh.OUTBOUND, "out", 10, id="outbound_rst_soon_after_handshake"),
    pytest.param(Refresh.OUTBOUND, "out", 1000, id="outbound_rst_after_long_established"),
    pytest.param(Refresh.BOTH, "in", 10, id="inbound_rst_refresh_both"),
    pytest.param(Refresh.OUTBOUND, "in", 10, id="inbound_rst_outbound_refresh"),
]


@pytest.mark.parametrize("refresh, side, t", RST_CASES)
def test_tcp_rst_gets_the_transitory_timer(refresh, side, t):
    nat = Nat(policy(refresh=refresh))
    _established(nat, t)
    if side == "out":
        out(nat, RST, t + 1)
    else:
        inn(nat, RST, t + 1)
    assert_lives_until(nat, t + 1 + TRANS)


def test_tcp_session_states_are_reported():
    nat = Nat()
    out(nat, SYN, 0)
    assert nat.mappings()[0].sessions[0].state == "syn-sent"
    inn(nat, SYNACK, 1)
    assert nat.mappings()[0].sessions[0].state == "established"
    out(nat, FIN | ACK, 2)
    inn(nat, FIN | ACK, 3)
    assert nat.mappings()[0].sessions[0].state == "closing"


# -- ICMP echo (RFC 5508 REQ-1) ------------------------------------------------------
@pytest.mark.parametrize("icmp_timeout", [60.0, 90.0], ids=["60s", "90s"])
def test_icmp_echo_mapping_lives_icmp_seconds(icmp_timeout):
    nat = Nat(policy(timeouts={"icmp": icmp_timeout}))
    nat.translated_out(icmp_echo(A, Y1, 77, 1))
    nat.at(5).translated_out(icmp_echo(A, Y1, 77, 2))
    assert_lives_until(nat, 5 + icmp_timeout)
    assert nat.dropped(icmp_echo(Y1, X1, 77, 2, reply=True)).reason is DropReason.NO_MAPPING


def test_processing_expires_due_mappings_without_a_call_to_expire():
    nat = Nat(policy(timeouts={"udp": 120.0}))
    nat.translated_out(udp(A, 5000, Y1, 80))
    v = nat.at(500).into(udp(Y1, 80, X1, 5000))
    assert v.reason is DropReason.NO_MAPPING
    assert EventKind.MAPPING_EXPIRED in kinds(v.events)
    assert type(nat.at(501).out(udp(A, 5000, Y1, 80))) is Forward
