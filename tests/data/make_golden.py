"""Write tests/data/golden/*.hex with scapy (run once; the files are committed).

    /opt/nlvenv/bin/python tests/data/make_golden.py

Each file: one ``# description`` line, then the packet as hex, 32 bytes a line.
Every field scapy would otherwise choose (id, ttl, flags, window, seq) is set
explicitly so natlab.packet.build can reproduce the bytes exactly; the values
are repeated in tests/unit/test_golden_packets.py.
"""

from __future__ import annotations

from pathlib import Path

from scapy.all import ICMP, IP, TCP, UDP, IPOption, fragment, raw

GOLDEN = Path(__file__).parent / "golden"

UDP_PKT = IP(src="192.168.1.2", dst="203.0.113.9", ttl=64, id=0x1234, flags=0) / UDP(
    sport=5000, dport=3478) / b"hello natlab"
SYN = IP(src="192.168.1.2", dst="198.51.100.7", ttl=64, id=1, flags="DF") / TCP(
    sport=40000, dport=80, flags="S", seq=1000, ack=0, window=64240, options=[("MSS", 1460)])
SYN_ACK = IP(src="198.51.100.7", dst="192.168.1.2", ttl=57, id=0, flags="DF") / TCP(
    sport=80, dport=40000, flags="SA", seq=5000, ack=1001, window=65535, options=[("MSS", 1400)])
ECHO_REQ = IP(src="10.0.0.2", dst="203.0.113.9", ttl=64, id=7, flags=0) / ICMP(
    type=8, code=0, id=7, seq=1) / b"abcdefgh"
ECHO_REP = IP(src="203.0.113.9", dst="10.0.0.2", ttl=50, id=99, flags=0) / ICMP(
    type=0, code=0, id=7, seq=1) / b"abcdefgh"
PROBE = IP(src="192.168.1.2", dst="203.0.113.9", ttl=64, id=0x2222, flags=0) / UDP(
    sport=5000, dport=9) / b"ping"
PORT_UNREACH = IP(src="203.0.113.9", dst="192.168.1.2", ttl=64, id=0, flags=0) / ICMP(
    type=3, code=3) / raw(PROBE)
# RFC 792 minimum quote: the IP header + first 8 bytes (old routers do this).
TIME_EXCEEDED = IP(src="10.0.0.1", dst="192.168.1.2", ttl=64, id=0, flags=0) / ICMP(
    type=11, code=0) / raw(SYN)[:28]
BIG_DF = IP(src="192.168.1.2", dst="203.0.113.9", ttl=64, id=0x3333, flags="DF") / UDP(
    sport=5000, dport=3478) / (b"\xab" * 1472)
# RFC 1812 quote: as much as fits in 576 bytes, i.e. 548 of the original.
FRAG_NEEDED = IP(src="10.0.0.1", dst="192.168.1.2", ttl=64, id=0, flags=0) / ICMP(
    type=3, code=4, nexthopmtu=1400) / raw(BIG_DF)[:548]
# Router Alert (RFC 2113) + Record Route with one slot: 11 bytes, padded to 12.
OPTIONS = IP(src="192.168.1.2", dst="203.0.113.9", ttl=1, id=5, flags=0,
             options=[IPOption(b"\x94\x04\x00\x00"), IPOption(b"\x07\x07\x04\x00\x00\x00\x00")]
             ) / UDP(sport=5000, dport=3478) / b"opts"
BIG_UDP = IP(src="192.168.1.2", dst="203.0.113.9", ttl=64, id=0x4444, flags=0) / UDP(
    sport=5000, dport=3478) / (bytes(range(256)) * 4 + b"tail")
FRAGS = fragment(BIG_UDP, fragsize=512)
TRUNCATED = raw(UDP_PKT)[:24]
BAD_IHL = raw(IP(src="192.168.1.2", dst="203.0.113.9", ihl=4, ttl=64, id=1, flags=0) / UDP(
    sport=1, dport=2))

PACKETS = {
    "udp": ("UDP 192.168.1.2:5000 -> 203.0.113.9:3478 'hello natlab', id=0x1234", UDP_PKT),
    "tcp_syn": ("TCP SYN seq=1000 win=64240 MSS 1460, DF, id=1", SYN),
    "tcp_synack": ("TCP SYN-ACK seq=5000 ack=1001 MSS 1400, DF, ttl=57", SYN_ACK),
    "icmp_echo_request": ("ICMP echo request id=7 seq=1 'abcdefgh', ip id=7", ECHO_REQ),
    "icmp_echo_reply": ("ICMP echo reply id=7 seq=1 'abcdefgh', ttl=50 ip id=99", ECHO_REP),
    "icmp_port_unreachable": ("ICMP 3/3 from 203.0.113.9 quoting the whole UDP probe", PORT_UNREACH),
    "icmp_time_exceeded": ("ICMP 11/0 from 10.0.0.1 quoting the TCP SYN's header + 8 bytes", TIME_EXCEEDED),
    "icmp_frag_needed": ("ICMP 3/4 mtu=1400 from 10.0.0.1 quoting 548 bytes of a 1500-byte DF UDP", FRAG_NEEDED),
    "ip_options": ("UDP with IP options Router Alert + Record Route (1 slot), ttl=1, id=5", OPTIONS),
    "frag_first": ("first fragment (MF, off=0) of a 1036-byte UDP datagram cut at 512, id=0x4444", FRAGS[0]),
    "frag_later": ("second fragment (MF, off=512) of the same datagram", FRAGS[1]),
    "frag_last": ("last fragment (off=1024) of the same datagram", FRAGS[2]),
    "truncated": ("the 'udp' packet cut to 24 bytes (total_length says 40)", TRUNCATED),
    "bad_ihl": ("UDP packet whose IHL is 4 (< 5)", BAD_IHL),
}


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, (description, packet) in PACKETS.items():
        data = raw(packet)
        lines = [data[i : i + 32].hex() for i in range(0, len(data), 32)]
        (GOLDEN / f"{name}.hex").write_text(f"# {description}\n" + "\n".join(lines) + "\n")
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
