"""Golden packets (made by scapy, tests/data/make_golden.py) against natlab.packet."""

from __future__ import annotations

from pathlib import Path

import pytest

from natlab.packet import (
    ICMPHeader,
    IPFlags,
    IPv4Header,
    PacketError,
    TCPFlags,
    TCPHeader,
    UDPHeader,
    build,
    parse_packet,
    problems,
    summarize,
    to_int,
)

GOLDEN = Path(__file__).parent.parent / "data" / "golden"


def golden(name: str) -> bytes:
    lines = (GOLDEN / f"{name}.hex").read_text().splitlines()
    return bytes.fromhex("".join(line for line in lines if not line.startswith("#")))


A, B, C = "192.168.1.2", "203.0.113.9", "198.51.100.7"
SYN = dict(src=A, sport=40000, dst=C, dport=80, flags=TCPFlags.SYN, seq=1000,
           window=64240, tcp_options=b"\x02\x04\x05\xb4", ident=1, df=True)
PROBE = dict(src=A, sport=5000, dst=B, dport=9, payload=b"ping", ident=0x2222)
BIG_DF = dict(src=A, sport=5000, dst=B, dport=3478, payload=b"\xab" * 1472, ident=0x3333, df=True)
BIG_UDP = dict(src=A, sport=5000, dst=B, dport=3478, payload=bytes(range(256)) * 4 + b"tail",
               ident=0x4444)

BUILT = {
    "udp": lambda: build.udp(A, 5000, B, 3478, b"hello natlab", ident=0x1234),
    "tcp_syn": lambda: build.tcp(**SYN),
    "tcp_synack": lambda: build.tcp(
        C, 80, A, 40000, flags=TCPFlags.SYN | TCPFlags.ACK, seq=5000, ack=1001,
        tcp_options=b"\x02\x04\x05\x78", ttl=57, df=True),
    "icmp_echo_request": lambda: build.icmp_echo("10.0.0.2", B, 7, 1, payload=b"abcdefgh", ident=7),
    "icmp_echo_reply": lambda: build.icmp_echo(
        B, "10.0.0.2", 7, 1, reply=True, payload=b"abcdefgh", ttl=50, ident=99),
    "icmp_port_unreachable": lambda: build.icmp_error(build.udp(**PROBE), src=B, type=3, code=3),
    "icmp_time_exceeded": lambda: build.icmp_error(
        build.tcp(**SYN), src="10.0.0.1", type=11, code=0, limit=20 + 8 + 28),
    "icmp_frag_needed": lambda: build.icmp_error(
        build.udp(**BIG_DF), src="10.0.0.1", type=3, code=4, mtu=1400),
    "ip_options": lambda: build.udp(
        A, 5000, B, 3478, b"opts", ttl=1, ident=5,
        options=b"\x94\x04\x00\x00" + b"\x07\x07\x04\x00\x00\x00\x00"),
    "frag_first": lambda: build.fragment(build.udp(**BIG_UDP), 532)[0],
    "frag_later": lambda: build.fragment(build.udp(**BIG_UDP), 532)[1],
    "frag_last": lambda: build.fragment(build.udp(**BIG_UDP), 532)[2],
}
MALFORMED = ["truncated", "bad_ihl"]


@pytest.mark.parametrize("name", sorted(BUILT))
def test_build_reproduces_scapy_bytes(name):
    assert build_hex(BUILT[name]()) == build_hex(golden(name))


def build_hex(data: bytes) -> str:
    return data.hex()


@pytest.mark.parametrize("name", sorted(BUILT))
def test_golden_packets_are_valid(name):
    assert problems(golden(name)) == []


@pytest.mark.parametrize("name", sorted(BUILT))
def test_golden_packets_reemit_identically(name):
    data = golden(name)
    ip, offset = IPv4Header.parse(data)
    assert ip.emit() == data[:offset]
    packet = parse_packet(data)
    if packet.l4 is not None:
        assert packet.l4.emit() + packet.payload == data[offset:]


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_golden_packets(name):
    data = golden(name)
    with pytest.raises(PacketError):
        IPv4Header.parse(data)
    assert summarize(data) == f"malformed ({len(data)} bytes)"
    assert problems(data) and problems(data)[0].startswith("malformed")


def test_parse_udp_fields():
    packet = parse_packet(golden("udp"))
    assert packet.ip == IPv4Header(
        src=to_int(A), dst=to_int(B), proto=17, total_length=40, ttl=64, ident=0x1234,
        flags=IPFlags.NONE, checksum=packet.ip.checksum)
    assert packet.l4 == UDPHeader(5000, 3478, 20, packet.l4.checksum)
    assert packet.payload == b"hello natlab"


def test_parse_tcp_syn_fields():
    packet = parse_packet(golden("tcp_syn"))
    assert packet.ip.df and not packet.ip.mf and packet.ip.ident == 1
    tcp = packet.l4
    assert isinstance(tcp, TCPHeader)
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack) == (40000, 80, 1000, 0)
    assert tcp.flags == TCPFlags.SYN and tcp.window == 64240
    assert tcp.options == b"\x02\x04\x05\xb4" and tcp.data_offset == 6


def test_parse_tcp_synack_fields():
    tcp = parse_packet(golden("tcp_synack")).l4
    assert tcp.flags == TCPFlags.SYN | TCPFlags.ACK
    assert (tcp.seq, tcp.ack) == (5000, 1001)


@pytest.mark.parametrize("name, type_", [("icmp_echo_request", 8), ("icmp_echo_reply", 0)])
def test_parse_icmp_echo_fields(name, type_):
    packet = parse_packet(golden(name))
    icmp = packet.l4
    assert isinstance(icmp, ICMPHeader)
    assert (icmp.type, icmp.code, icmp.ident, icmp.seq) == (type_, 0, 7, 1)
    assert packet.payload == b"abcdefgh"


def test_parse_frag_needed_fields():
    packet = parse_packet(golden("icmp_frag_needed"))
    assert (packet.l4.type, packet.l4.code, packet.l4.next_hop_mtu) == (3, 4, 1400)
    assert len(packet.payload) == 548
    inner, _ = IPv4Header.parse(packet.payload, quoted=True)
    assert inner.total_length == 1500 and inner.df


def test_parse_ip_options_fields():
    ip, offset = IPv4Header.parse(golden("ip_options"))
    assert ip.ihl == 8 and offset == 32 and ip.ttl == 1
    assert ip.options == b"\x94\x04\x00\x00\x07\x07\x04\x00\x00\x00\x00\x00"


@pytest.mark.parametrize("name, offset, mf", [
    ("frag_first", 0, True), ("frag_later", 512, True), ("frag_last", 1024, False)])
def test_parse_fragment_fields(name, offset, mf):
    ip, _ = IPv4Header.parse(golden(name))
    assert (ip.frag_offset, ip.mf, ip.ident, ip.is_fragment) == (offset, mf, 0x4444, True)


SUMMARIES = {
    "udp": "udp 192.168.1.2:5000 -> 203.0.113.9:3478 len=12",
    "tcp_syn": "tcp 192.168.1.2:40000 -> 198.51.100.7:80 [SYN]",
    "tcp_synack": "tcp 198.51.100.7:80 -> 192.168.1.2:40000 [SYN,ACK]",
    "icmp_echo_request": "icmp echo-request id=7 seq=1 10.0.0.2 -> 203.0.113.9",
    "icmp_port_unreachable": (
        "icmp port-unreachable 203.0.113.9 -> 192.168.1.2 [udp 192.168.1.2:5000 -> 203.0.113.9:9]"),
    "icmp_time_exceeded": (
        "icmp ttl-exceeded 10.0.0.1 -> 192.168.1.2 [tcp 192.168.1.2:40000 -> 198.51.100.7:80]"),
    "icmp_frag_needed": (
        "icmp frag-needed mtu=1400 10.0.0.1 -> 192.168.1.2 [udp 192.168.1.2:5000 -> 203.0.113.9:3478]"),
    "frag_later": "frag id=17476 off=512 mf proto=17 192.168.1.2 -> 203.0.113.9 len=512",
}


@pytest.mark.parametrize("name", sorted(SUMMARIES))
def test_summaries(name):
    assert summarize(golden(name)) == SUMMARIES[name]
