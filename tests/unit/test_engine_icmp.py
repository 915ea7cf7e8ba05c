"""ICMP (RFC 5508): echo identifiers as ports (REQ-1, REQ-2); errors and their quotes (REQ-3..6)."""

from __future__ import annotations

import pytest

from enginekit import (
    SYN, A, B, Nat, ROUTER, X1, Y1, Y2, dst_of, icmp_echo, icmp_error, policy, quoted, src_of,
    tcp, udp, valid,
)
from natlab.engine import DropReason, Side, StaticNat
from natlab.packet.headers import to_str


# -- echo ----------------------------------------------------------------------------
def test_echo_identifier_is_translated_and_restored():
    nat = Nat()
    sent = nat.translated_out(icmp_echo(A, Y1, 77, 1, payload=b"ping"))
    x_addr, x_id = src_of(sent)
    assert x_addr == X1
    back = nat.translated_in(icmp_echo(Y1, x_addr, x_id, 1, reply=True, payload=b"ping"))
    assert dst_of(back) == (A, 77)
    assert src_of(back)[0] == Y1


def test_two_hosts_with_the_same_echo_id_get_distinct_external_ids():
    nat = Nat()
    ida = src_of(nat.translated_out(icmp_echo(A, Y1, 77, 1)))[1]
    idb = src_of(nat.translated_out(icmp_echo(B, Y1, 77, 1)))[1]
    assert ida != idb
    assert dst_of(nat.translated_in(icmp_echo(Y1, X1, ida, 1, reply=True))) == (A, 77)
    assert dst_of(nat.translated_in(icmp_echo(Y1, X1, idb, 1, reply=True))) == (B, 77)


@pytest.mark.parametrize(
    "packet, side",
    [
        pytest.param(icmp_echo(A, Y1, 77, 1), Side.INSIDE, id="request_out"),
        pytest.param(icmp_echo(Y1, X1, 77, 1, reply=True), Side.OUTSIDE, id="reply_in"),
    ],
)
def test_echo_off_drops_icmp_disabled(packet, side):
    nat = Nat(policy(icmp={"echo": False}))
    assert nat.dropped(packet, side).reason is DropReason.ICMP_DISABLED


def test_echo_reply_from_another_remote_passes_under_eif():
    nat = Nat()  # EIF: any remote may answer
    x_id = src_of(nat.translated_out(icmp_echo(A, Y1, 77, 1)))[1]
    assert dst_of(nat.translated_in(icmp_echo(Y2, X1, x_id, 1, reply=True))) == (A, 77)


# -- errors from outside ---------------------------------------------------------------
def _collide(nat: Nat) -> None:
    """B takes port 5000 first so A's mapping gets another port (x' != x)."""
    nat.translated_out(udp(B, 5000, Y2, 9))
    nat.translated_out(tcp(B, 5000, Y2, 9, flags=SYN))
    nat.translated_out(icmp_echo(B, Y2, 5000, 1))


ORIGINALS = [
    pytest.param(lambda: udp(A, 5000, Y1, 53, b"query" * 20), id="udp"),
    pytest.param(lambda: tcp(A, 5000, Y1, 443, flags=SYN), id="tcp"),
    pytest.param(lambda: icmp_echo(A, Y1, 5000, 1, payload=b"x" * 40), id="icmp_echo"),
]
SENDERS = [
    pytest.param(Y1, 3, 3, id="port_unreachable_from_remote"),
    pytest.param(ROUTER, 11, 0, id="time_exceeded_from_router"),
    pytest.param(ROUTER, 3, 4, id="frag_needed_from_router"),
]


@pytest.mark.parametrize("collide", [False, True], ids=["port_kept", "port_changed"])
@pytest.mark.parametrize("sender, itype, code", SENDERS)
@pytest.mark.parametrize("make", ORIGINALS)
def test_error_from_outside_reaches_the_inside_host_with_the_quote_restored(make, sender, itype, code, collide):
    nat = Nat()
    if collide:
        _collide(nat)
    original = make()
    sent = nat.translated_out(original)
    mtu = 1400 if (itype, code) == (3, 4) else 0
    err = icmp_error(sent, src=sender, type=itype, code=code, mtu=mtu)
    back = nat.translated_in(err)  # checks outer IP, ICMP and quoted IP checksums
    p = valid(back)
    assert to_str(p.ip.src) == sender
    assert to_str(p.ip.dst) == A
    q = quoted(back)
    assert q.ip.src == valid(original).ip.src
    assert q.ip.dst == valid(original).ip.dst
    assert bytes(q.l4.emit()) == bytes(valid(original).l4.emit())  # quoted ports/id and checksum restored


def test_error_quoting_an_unknown_flow_is_dropped_unmatched():
    nat = Nat()
    nat.translated_out(udp(A, 5000, Y1, 53))
    stranger = udp(X1, 9999, Y1, 53)
    assert nat.dropped(icmp_error(stranger, src=Y1, type=3, code=3)).reason is DropReason.ICMP_ERROR_UNMATCHED


def test_error_quoting_a_mapping_but_another_remote_is_dropped_unmatched():
    nat = Nat()
    nat.translated_out(udp(A, 5000, Y1, 53))
    other = udp(X1, 5000, Y2, 53)
    assert nat.dropped(icmp_error(other, src=Y2, type=3, code=3)).reason is DropReason.ICMP_ERROR_UNMATCHED


def test_errors_off_drops_icmp_disabled():
    nat = Nat(policy(icmp={"errors": False}))
    sent = nat.translated_out(udp(A, 5000, Y1, 53))
    assert nat.dropped(icmp_error(sent, src=Y1, type=3, code=3)).reason is DropReason.ICMP_DISABLED


def test_errors_do_not_refresh_the_mapping():
    nat = Nat(policy(timeouts={"udp": 120.0}))
    sent = nat.translated_out(udp(A, 5000, Y1, 53))
    nat.at(100).translated_in(icmp_error(sent, src=Y1, type=3, code=3))
    assert not nat.at(121).mappings()


# -- errors from inside ---------------------------------------------------------------
@pytest.mark.parametrize("collide", [False, True], ids=["port_kept", "port_changed"])
def test_inside_hosts_port_unreachable_goes_out_from_the_external_endpoint(collide):
    nat = Nat()
    if collide:
        _collide(nat)
    ext = nat.external_of(udp(A, 5000, Y1, 53))
    inbound = udp(Y1, 53, *ext, b"late answer")
    delivered = nat.translated_in(inbound)
    err = icmp_error(delivered, src=A, type=3, code=3)
    out = nat.translated_out(err)
    p = valid(out)
    assert (to_str(p.ip.src), to_str(p.ip.dst)) == (X1, Y1)
    q = quoted(out)
    assert (to_str(q.ip.src), q.l4.sport) == (Y1, 53)
    assert (to_str(q.ip.dst), q.l4.dport) == ext
    assert bytes(q.l4.emit()) == bytes(valid(inbound).l4.emit())  # the quote is what Y1 sent


def test_inside_error_about_unknown_traffic_is_dropped_unmatched():
    nat = Nat()
    err = icmp_error(udp(Y1, 53, A, 5000), src=A, type=3, code=3)
    assert nat.dropped(err, Side.INSIDE).reason is DropReason.ICMP_ERROR_UNMATCHED


# -- static 1:1 hosts ---------------------------------------------------------------------
def test_error_for_a_static_nat_host_reaches_it():
    static_ext = "203.0.113.50"
    nat = Nat(policy(static=(StaticNat(A, static_ext),)))
    sent = nat.translated_out(udp(A, 5000, Y1, 53))
    assert src_of(sent) == (static_ext, 5000)
    back = nat.translated_in(icmp_error(sent, src=Y1, type=3, code=3))
    assert dst_of(back)[0] == A
    assert to_str(quoted(back).ip.src) == A
