"""The per-packet path's inlined helpers give what the plain ones they replace give.

``rewrite`` (one call per translation) against ``add_to_csum`` + ``rewrite_l4`` (RFC 1624
eqn. 3, RFC 768's zero rules); ``mapping_deltas`` against ``delta32``/``delta16``/``fold``;
``to_str`` against ``ipaddress``; ``Event.to_dict`` against ``dataclasses.asdict``.
"""

from __future__ import annotations

from dataclasses import asdict
from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from natlab.engine.checksum_deltas import ICMP, TCP, UDP, add_to_csum, mapping_deltas, rewrite, rewrite_l4
from natlab.engine.types import Endpoint, to_str
from natlab.engine.verdicts import Event, EventKind
from natlab.packet.checksum import delta16, delta32, fold

addr = st.one_of(st.sampled_from([0, 1, 0xFFFF, 0x10000, 0xFFFFFFFF]), st.integers(0, 0xFFFFFFFF))
port = st.one_of(st.sampled_from([0, 1, 0xFFFF]), st.integers(0, 0xFFFF))
proto = st.sampled_from([UDP, TCP, ICMP])


@given(proto, addr, port, addr, port)
def test_mapping_deltas_equal_the_plain_sums(p, a, x, b, y):
    internal, external = Endpoint(a, x), Endpoint(b, y)
    ip_out, ip_in = fold(delta32(a, b)), fold(delta32(b, a))
    out, back = delta16(x, y), delta16(y, x)
    want = ((ip_out, fold(out), ip_in, fold(back)) if p == ICMP
            else (ip_out, fold(ip_out + out), ip_in, fold(ip_in + back)))
    assert mapping_deltas(p, internal, external) == want


@given(proto, st.binary(min_size=48, max_size=48), st.sampled_from([12, 16]), addr, st.integers(0, 0xFFFF),
       st.sampled_from([0, 4]), port, st.integers(0, 0xFFFF), st.booleans())
def test_rewrite_equals_the_three_step_rewrite(p, raw, at, new_addr, ip_delta, port_off, new_port, l4_delta,
                                               zero_udp_csum):
    packet = bytearray(raw)
    if zero_udp_csum:
        packet[26:28] = b"\0\0"
    want, got = bytearray(packet), bytearray(packet)
    addr_bytes = new_addr.to_bytes(4, "big")
    want[at:at + 4] = addr_bytes
    add_to_csum(want, 10, ip_delta)
    rewrite_l4(want, 20, p, port_off, new_port, l4_delta)
    rewrite(got, at, addr_bytes, ip_delta, 20, p, port_off, new_port, l4_delta)
    assert got == want


@given(addr)
def test_to_str_is_the_dotted_quad_of_ipaddress(a):
    assert to_str(a) == str(IPv4Address(a))


text = st.one_of(st.just(""), st.none(), st.text(max_size=8))


@given(st.sampled_from(list(EventKind)), st.one_of(st.floats(allow_nan=False), st.just(0.0)),
       st.text(max_size=5), st.text(max_size=5), st.text(max_size=5), st.text(max_size=5), text, st.text(max_size=5))
def test_event_to_dict_equals_asdict_without_empties(kind, at, protocol, internal, external, remote, reason, detail):
    event = Event(kind, at, protocol, internal, external, remote, reason, detail)
    want = asdict(event)
    want["kind"] = kind.value
    want = {k: v for k, v in want.items() if v not in ("", None)}
    got = event.to_dict()
    assert got == want and list(got) == list(want)
