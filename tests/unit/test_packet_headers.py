"""Header values: parse()/emit() round trips, PacketError on bad input, summarize()."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natlab.packet import (
    ICMPHeader,
    IPFlags,
    IPv4Header,
    PacketError,
    TCPFlags,
    TCPHeader,
    UDPHeader,
    build,
    icmp_name,
    parse_packet,
    problems,
    summarize,
    to_int,
    to_str,
)

UDP = build.udp("192.168.1.2", 5000, "203.0.113.9", 3478, b"x" * 48)
SYN = build.tcp("1.2.3.4", 1, "5.6.7.8", 80, flags=TCPFlags.SYN)


def test_packet_error_is_a_value_error():
    assert issubclass(PacketError, ValueError)


def test_addresses_convert_both_ways():
    assert to_int("10.0.0.1") == 0x0A000001
    assert to_int(0x0A000001) == 0x0A000001
    assert to_str(0xCB007109) == "203.0.113.9"


@given(
    st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 255),
    st.integers(20, 0xFFFF), st.integers(0, 255), st.integers(0, 0xFFFF),
    st.sampled_from(list(IPFlags)), st.integers(0, 0x1FFF), st.integers(0, 10),
)
def test_ipv4_header_round_trip(src, dst, proto, total, ttl, ident, flags, frag, words):
    header = IPv4Header(
        src=src, dst=dst, proto=proto, total_length=max(total, 20 + 4 * words), ttl=ttl,
        ident=ident, flags=flags, frag_offset=frag * 8, options=b"\x01" * 4 * words,
    )
    raw = header.emit()
    parsed, offset = IPv4Header.parse(raw, quoted=True)
    assert offset == len(raw) == header.header_length
    assert parsed == IPv4Header(**{**_fields(header), "checksum": parsed.checksum})
    assert parsed.emit() == raw


def _fields(header):
    return {name: getattr(header, name) for name in header.__dataclass_fields__}


def test_emit_computes_ip_checksum_only_when_none():
    header = IPv4Header(src=1, dst=2, proto=17)
    assert IPv4Header.parse(header.emit())[0].checksum != 0
    assert header.emit()[10:12] != b"\0\0"
    assert IPv4Header(src=1, dst=2, proto=17, checksum=0xBEEF).emit()[10:12] == b"\xbe\xef"


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF),
       st.integers(0, 0xFFFFFFFF), st.integers(0, 255), st.integers(0, 10))
def test_tcp_header_round_trip(sport, dport, seq, ack, flags, words):
    header = TCPHeader(sport, dport, seq, ack, TCPFlags(flags), options=b"\x01" * 4 * words)
    parsed, offset = TCPHeader.parse(header.emit())
    assert parsed == header and offset == 20 + 4 * words


def test_udp_and_icmp_header_round_trip():
    assert UDPHeader.parse(UDPHeader(1, 2, 30, 0xABCD).emit()) == (UDPHeader(1, 2, 30, 0xABCD), 8)
    echo = ICMPHeader.echo(7, 1)
    assert ICMPHeader.parse(echo.emit()) == (echo, 8)
    assert (echo.type, echo.ident, echo.seq) == (8, 7, 1)
    assert ICMPHeader.echo(7, 1, reply=True).type == 0


def test_tcp_flags_names():
    assert [f.name for f in TCPFlags if f] == ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"]


def _with(data: bytes, at: int, fmt: str, value: int) -> bytes:
    return data[:at] + struct.pack(fmt, value) + data[at + struct.calcsize(fmt):]


BAD_PACKETS = {
    "empty": b"",
    "shorter than an IPv4 header": UDP[:19],
    "version 6": _with(UDP, 0, "!B", 0x65),
    "IHL below 5": _with(UDP, 0, "!B", 0x44),
    "IHL past the buffer": _with(UDP[:24], 0, "!B", 0x4F),
    "total_length below header": _with(UDP, 2, "!H", 19),
    "total_length past the buffer": _with(UDP, 2, "!H", len(UDP) + 1),
    "truncated UDP header": build.ipv4("1.1.1.1", "2.2.2.2", 17, b"\0" * 7),
    "truncated TCP header": build.ipv4("1.1.1.1", "2.2.2.2", 6, b"\0" * 19),
    "TCP data offset below 5": build.ipv4("1.1.1.1", "2.2.2.2", 6, b"\0" * 12 + b"\x40" + b"\0" * 7),
    "TCP options past the segment": build.ipv4("1.1.1.1", "2.2.2.2", 6, b"\0" * 12 + b"\xf0" + b"\0" * 7),
    "truncated ICMP header": build.ipv4("1.1.1.1", "2.2.2.2", 1, b"\0" * 7),
}


@pytest.mark.parametrize("name", sorted(BAD_PACKETS))
def test_bad_packets_raise_packet_error(name):
    data = BAD_PACKETS[name]
    with pytest.raises(PacketError):
        parse_packet(data)
    assert summarize(data) == f"malformed ({len(data)} bytes)"
    assert problems(data)


def test_quoted_parse_allows_truncation():
    header, _ = IPv4Header.parse(UDP[:28], quoted=True)
    assert header.total_length == len(UDP)
    with pytest.raises(PacketError):
        IPv4Header.parse(UDP[:28])


def test_parse_ignores_bytes_past_total_length():
    assert parse_packet(UDP + b"\0\0").payload == b"x" * 48


SUMMARIES = {
    "udp": (UDP, "udp 192.168.1.2:5000 -> 203.0.113.9:3478 len=48"),
    "syn": (SYN, "tcp 1.2.3.4:1 -> 5.6.7.8:80 [SYN]"),
    "tcp with data": (
        build.tcp("1.2.3.4", 1, "5.6.7.8", 80, flags=TCPFlags.PSH | TCPFlags.ACK, payload=b"hi"),
        "tcp 1.2.3.4:1 -> 5.6.7.8:80 [PSH,ACK] len=2"),
    "echo": (build.icmp_echo("10.0.0.2", "203.0.113.9", 7, 1),
             "icmp echo-request id=7 seq=1 10.0.0.2 -> 203.0.113.9"),
    "port unreachable": (
        build.icmp_error(build.udp("192.168.1.2", 5000, "203.0.113.9", 9), src="203.0.113.9",
                         type=3, code=3),
        "icmp port-unreachable 203.0.113.9 -> 192.168.1.2 [udp 192.168.1.2:5000 -> 203.0.113.9:9]"),
    "error quoting an echo": (
        build.icmp_error(build.icmp_echo("10.0.0.2", "8.8.8.8", 3, 4), src="10.0.0.1", type=11, code=0),
        "icmp ttl-exceeded 10.0.0.1 -> 10.0.0.2 [icmp echo-request id=3 seq=4 10.0.0.2 -> 8.8.8.8]"),
    "error with a malformed quote": (
        build.icmp("9.9.9.9", "1.1.1.1", ICMPHeader(3, 1), b"\x45\x00"),
        "icmp host-unreachable 9.9.9.9 -> 1.1.1.1 [malformed quote (2 bytes)]"),
    "other protocol": (build.ipv4("1.1.1.1", "2.2.2.2", 47, b"gre!"), "proto 47 1.1.1.1 -> 2.2.2.2 len=4"),
    "later fragment": (
        build.ipv4("1.1.1.1", "2.2.2.2", 17, b"\0" * 16, ident=9, frag_offset=1480, mf=True),
        "frag id=9 off=1480 mf proto=17 1.1.1.1 -> 2.2.2.2 len=16"),
}


@pytest.mark.parametrize("name", sorted(SUMMARIES))
def test_summaries(name):
    data, expected = SUMMARIES[name]
    assert summarize(data) == expected


def test_icmp_names():
    assert icmp_name(3, 4) == "frag-needed"
    assert icmp_name(3, 7) == "unreachable"
    assert icmp_name(42, 1) == "type=42 code=1"


@given(st.binary(max_size=80))
def test_random_bytes_never_crash(data):
    try:
        parse_packet(data)
    except PacketError:
        pass
    assert isinstance(summarize(data), str)
    assert isinstance(problems(data), list)


@given(st.binary(min_size=20, max_size=80), st.sampled_from([1, 6, 17]))
def test_random_ipv4_bodies_never_crash(body, proto):
    # A valid IP header around random bytes reaches the transport parsers.
    data = build.ipv4("1.1.1.1", "2.2.2.2", proto, body)
    assert isinstance(summarize(data), str)
    assert isinstance(problems(data), list)


@given(st.binary(max_size=60), st.integers(0, 1))
def test_random_icmp_quotes_never_crash(quote, mutate_header):
    if mutate_header:
        quote = b"\x45" + quote
    data = build.icmp("9.9.9.9", "1.1.1.1", ICMPHeader(3, 3), quote)
    assert summarize(data).startswith("icmp port-unreachable")
    assert isinstance(problems(data), list)
