"""The DPDK datapath's pure parts: frames (ARP, IPv4 checks, TTL, ICMP), routes, neighbours, options."""

from __future__ import annotations

import ipaddress

import pytest

from natlab.datapaths.dpdk import frames
from natlab.datapaths.dpdk.options import DpdkOptions
from natlab.datapaths.dpdk.routes import ARP_TRIES, Neighbours, Route, RouteTable
from natlab.errors import ConfigError
from natlab.packet import build, parse_packet, problems

MAC = bytes.fromhex("020000000001")
PEER = bytes.fromhex("020000000002")


def ip(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


def test_an_arp_request_parses_and_the_reply_goes_back_to_the_asker() -> None:
    request = frames.arp_frame(1, PEER, ip("192.168.1.2"), frames.BROADCAST, ip("192.168.1.1"))
    assert request[:6] == frames.BROADCAST and len(request) == 60
    arp = frames.parse_arp(request)
    assert (arp.op, arp.sender_mac, arp.sender_ip, arp.target_ip) == (1, PEER, ip("192.168.1.2"), ip("192.168.1.1"))
    reply = frames.parse_arp(frames.arp_frame(2, MAC, arp.target_ip, arp.sender_mac, arp.sender_ip))
    assert (reply.op, reply.sender_mac, reply.target_mac, reply.target_ip) == (2, MAC, PEER, ip("192.168.1.2"))


@pytest.mark.parametrize("cut", [0, 13, 20, 41])
def test_short_or_foreign_arp_is_not_arp(cut: int) -> None:
    request = frames.arp_frame(1, PEER, 1, frames.BROADCAST, 2)
    assert frames.parse_arp(request[:cut]) is None
    foreign = bytearray(request)
    foreign[14:16] = b"\x00\x06"  # hardware type IEEE 802
    assert frames.parse_arp(bytes(foreign)) is None


def _mangled(offset: int, value: int) -> bytes:
    packet = bytearray(build.udp("192.168.1.2", 1, "203.0.113.100", 2, b"x"))
    packet[offset] = value
    return bytes(packet)


@pytest.mark.parametrize("packet, why", [
    (b"\x45" * 19, "truncated"),
    (_mangled(0, 0x65), "bad-version"),
    (_mangled(0, 0x44), "bad-ihl"),
    (_mangled(3, 0xFF), "bad-length"),
    (_mangled(0, 0x4F), "bad-length"),
    (_mangled(11, 0x00), "bad-checksum"),
])
def test_a_router_drops_what_rfc_1812_says_it_must(packet: bytes, why: str) -> None:
    assert frames.ipv4_problem(packet) == why


def test_the_ttl_decrement_keeps_the_header_checksum_valid() -> None:
    for ttl in (2, 64, 255):
        packet = build.udp("192.168.1.2", 1, "203.0.113.100", 2, b"x", ttl=ttl)
        out = frames.ttl_decremented(packet)
        assert out[8] == ttl - 1 and problems(bytes(out)) == []


def test_echo_to_us_is_answered_and_errors_quote_the_original() -> None:
    request = build.icmp_echo("192.168.1.2", "192.168.1.1", 7, 3, payload=b"hello")
    reply = parse_packet(frames.echo_reply(request))
    assert (reply.ip.src, reply.ip.dst) == (ip("192.168.1.1"), ip("192.168.1.2"))
    assert problems(frames.echo_reply(request)) == []
    assert frames.echo_reply(build.udp("192.168.1.2", 1, "192.168.1.1", 2)) is None
    late = build.udp("192.168.1.2", 1, "203.0.113.100", 2, b"x" * 40, ttl=1)
    error = frames.icmp_error_for(late, ip("192.168.1.1"), 11, 0)
    assert problems(error) == [] and error[20] == 11 and error[28:48] == late[:20]
    big = build.udp("192.168.1.2", 1, "203.0.113.100", 2, b"x" * 1500, df=True)
    need = frames.icmp_error_for(big, ip("192.168.1.1"), 3, 4, mtu=1400)
    assert need[20:22] == b"\x03\x04" and int.from_bytes(need[26:28], "big") == 1400


def test_no_icmp_error_about_an_icmp_error_a_later_fragment_or_a_zero_source() -> None:
    error = build.icmp_error(build.udp("1.2.3.4", 1, "5.6.7.8", 2), src="9.9.9.9", type=3, code=3)
    assert frames.icmp_error_for(error, 1, 11, 0) is None
    later = build.udp("192.168.1.2", 1, "203.0.113.100", 2, b"x", frag_offset=8)
    assert frames.icmp_error_for(later, 1, 11, 0) is None
    assert frames.icmp_error_for(build.udp("0.0.0.0", 1, "203.0.113.100", 2), 1, 11, 0) is None


def test_the_longest_prefix_wins_and_the_default_route_names_its_gateway() -> None:
    table = RouteTable([Route(0, 0, 1, ip("203.0.113.254")), Route(ip("203.0.113.0"), 24, 1, None),
                        Route(ip("192.168.1.0"), 24, 0, None)])
    assert table.lookup(ip("192.168.1.7")).port == 0
    assert table.lookup(ip("203.0.113.9")).address == ip("203.0.113.9")
    assert table.lookup(ip("198.51.100.1")).address == ip("203.0.113.254")
    assert RouteTable([Route(ip("192.168.1.0"), 24, 0, None)]).lookup(ip("10.0.0.1")) is None


def test_packets_wait_for_arp_are_released_once_and_given_up_after_the_tries() -> None:
    n = Neighbours()
    assert n.wait(1, 5, b"p1", 0.0) is True
    assert n.wait(1, 5, b"p2", 0.1) is False
    assert n.learn(1, 5, PEER) == (False, [b"p1", b"p2"])
    assert n.get(1, 5) == PEER and n.learn(1, 5, MAC)[0] is True  # a changed MAC says so
    n.wait(1, 6, b"q", 0.0)
    asked = [n.retries(t) for t in (1.0, 2.0, 3.0)]
    assert asked[:ARP_TRIES - 1] == [[(1, 6)]] * (ARP_TRIES - 1) and asked[-1] == []
    assert n.dropped == 1 and not n.pending


def test_options_fill_defaults_and_every_bad_one_is_named_at_once() -> None:
    assert DpdkOptions.from_dict({}) == DpdkOptions()
    with pytest.raises(ConfigError) as err:
        DpdkOptions.from_dict({"driver": "pcap", "sessions": 0, "wrokers": 2})
    text = str(err.value)
    assert "pcap" in text and "dpdk.sessions" in text and "wrokers" in text


def test_workers_are_bounded_by_what_the_c_code_holds() -> None:
    assert DpdkOptions.from_dict({"workers": 2}).workers == 2
    for bad in (0, 9, True, "2"):
        with pytest.raises(ConfigError, match="dpdk.workers"):
            DpdkOptions.from_dict({"workers": bad})


def test_several_workers_keep_the_driver_asked_for_af_xdp_included() -> None:
    assert DpdkOptions.from_dict({"workers": 2}).driver == "auto"  # auto: af_xdp first, as with one
    assert DpdkOptions.from_dict({"workers": 2, "driver": "af_xdp"}).driver == "af_xdp"


def test_idle_is_adaptive_by_default_busy_on_request_and_anything_else_is_named() -> None:
    assert DpdkOptions().idle == "adaptive"
    assert DpdkOptions.from_dict({"idle": "busy"}).idle == "busy"
    with pytest.raises(ConfigError, match="dpdk.idle") as err:
        DpdkOptions.from_dict({"idle": "sleepy"})
    assert "adaptive, busy" in str(err.value)


def test_the_topology_model_takes_the_idle_knob_and_refuses_a_bad_one() -> None:
    from pydantic import ValidationError

    from natlab.topology.model import DpdkEntry

    assert DpdkEntry().idle == "adaptive" and DpdkEntry(idle="busy").idle == "busy"
    with pytest.raises(ValidationError):
        DpdkEntry(idle="sleepy")
