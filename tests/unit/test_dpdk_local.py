"""The DPDK datapath's local delivery, pure parts: what goes to the kernel's port mapping
servers through the TUN, what may come back out, and the router's hand-over."""

from __future__ import annotations

import ipaddress

import pytest

from natlab.datapaths.dpdk import frames
from natlab.datapaths.dpdk.local import Served, from_kernel, multicast_mac, to_kernel
from natlab.datapaths.dpdk.router import Router
from natlab.datapaths.dpdk.routes import Iface, Route, RouteTable
from natlab.packet import build
from natlab.packet.headers import TCPFlags


def ip(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


GW, ALICE, EXT, UPSTREAM = "192.168.1.1", "192.168.1.10", "100.64.0.2", "100.64.0.1"
ALL = Served(ip(GW), frozenset({5351, 1900}), frozenset({5000}), (ip(EXT), 5350))
NONE = Served(ip(GW), frozenset(), frozenset())
SEARCH = b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\n\r\n'


@pytest.mark.parametrize("packet, why", [
    (build.udp(ALICE, 5350, GW, 5351, b"\x02\x01"), "natpmp-pcp"),
    (build.udp(ALICE, 40000, "239.255.255.250", 1900, SEARCH), "ssdp"),
    (build.udp(ALICE, 40000, GW, 1900, SEARCH), "ssdp"),
    (build.tcp(ALICE, 40000, GW, 5000, flags=TCPFlags.SYN), "upnp-http"),
])
def test_what_the_servers_serve_goes_to_the_kernel_from_the_inside_only(packet, why) -> None:
    assert to_kernel(packet, ALL, from_inside=True) == why
    assert to_kernel(packet, ALL, from_inside=False) is None  # nothing from the WAN side
    assert to_kernel(packet, NONE, from_inside=True) is None  # protocols off: nothing served


@pytest.mark.parametrize("packet", [
    build.icmp_echo(ALICE, GW, 1, 1),  # ping: the router's
    build.udp(ALICE, 5350, GW, 5352),  # another port
    build.udp(ALICE, 5350, "192.168.1.2", 5351),  # another address
    build.tcp(ALICE, 40000, GW, 5351, flags=TCPFlags.SYN),  # TCP to a UDP server's port
    build.udp(ALICE, 40000, "239.255.255.250", 5351),  # the group, another port
    build.udp(ALICE, 5350, GW, 5351, b"x" * 8, mf=True),  # a fragment
])
def test_anything_else_to_the_gateway_stays_with_the_router(packet) -> None:
    assert to_kernel(packet, ALL, from_inside=True) is None


def test_the_upstream_servers_answer_reaches_the_gateways_own_pcp_client_after_the_engine() -> None:
    answer = build.udp(UPSTREAM, 5351, EXT, 5350, b"\x02\x81")
    assert to_kernel(answer, ALL, from_inside=False) == "upstream"
    assert to_kernel(answer, NONE, from_inside=False) is None  # interworking off: no client
    assert to_kernel(build.udp(UPSTREAM, 5351, EXT, 5351), ALL, from_inside=False) is None


@pytest.mark.parametrize("packet, why", [
    (build.udp(GW, 5351, ALICE, 5350, b"\x00\x80"), "udp"),
    (build.udp(GW, 5351, "224.0.0.1", 5350, b"\x00\x80"), "udp"),  # an announcement
    (build.udp(GW, 1900, ALICE, 40000, b"HTTP/1.1 200 OK\r\n\r\n"), "udp"),
    (build.tcp(GW, 5000, ALICE, 40000, flags=TCPFlags.SYN | TCPFlags.ACK), "tcp"),
    (build.icmp_error(build.udp(ALICE, 1, GW, 5351), src=ip(GW), type=3, code=3), "icmp"),
    (build.udp(EXT, 5350, UPSTREAM, 5351, b"\x02\x01"), "upstream"),
])
def test_the_kernels_answers_from_served_endpoints_may_leave(packet, why) -> None:
    assert from_kernel(packet, ALL) == why


@pytest.mark.parametrize("packet", [
    build.udp(GW, 40000, "203.0.113.100", 53),  # the namespace's own other traffic
    build.tcp(GW, 22, ALICE, 40000, flags=TCPFlags.SYN),
    build.udp("0.0.0.0", 0, "224.0.0.22", 0),  # stands in for an IGMP report's source
    build.udp(EXT, 5350, UPSTREAM, 5351)[:10],  # truncated
])
def test_anything_else_the_kernel_sends_is_dropped(packet) -> None:
    assert from_kernel(packet, ALL) is None


def test_a_groups_mac_is_01_00_5e_and_its_low_23_bits() -> None:
    assert multicast_mac(ip("239.255.255.250")) == bytes.fromhex("01005e7ffffa")
    assert multicast_mac(ip("224.0.0.1")) == bytes.fromhex("01005e000001")


# --- the router's hand-over, with a dataplane and a kernel that record what they get ---

MAC_IN, MAC_OUT, MAC_ALICE = bytes.fromhex("020000000001"), bytes.fromhex("020000000002"), bytes.fromhex("02000000000a")


class _Dataplane:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def send(self, port: int, frame: bytes) -> bool:
        self.sent.append((port, bytes(frame)))
        return True


class _Kernel:
    """Stands for :class:`LocalDelivery`: takes what :func:`to_kernel` gives it."""

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def take(self, packet: bytes, from_inside: bool) -> bool:
        if to_kernel(packet, ALL, from_inside) is None:
            return False
        self.got.append(packet)
        return True


class _Gateway:
    pool = [EXT]
    engine = object()

    def process(self, packet, side):  # noqa: ANN001 - never reached by these frames
        raise AssertionError("a frame for the gateway's servers met the engine")


def _router() -> tuple[Router, _Dataplane, _Kernel]:
    ifaces = [Iface("in0", 0, True, MAC_IN, 1500, ((ip(GW), 24),)),
              Iface("out0", 1, False, MAC_OUT, 1500, ((ip(EXT), 24),))]
    routes = RouteTable([Route(ip("192.168.1.0"), 24, 0, None), Route(0, 0, 1, ip(UPSTREAM))])
    dp = _Dataplane()
    router = Router(_Gateway(), dp, ifaces, routes, cache=None, clock=lambda: 0.0)
    router.local = _Kernel()
    router.neighbours.learn(0, ip(ALICE), MAC_ALICE)
    return router, dp, router.local


def test_a_multicast_search_on_the_inside_goes_to_the_kernel_and_is_never_routed() -> None:
    router, dp, kernel = _router()
    search = build.udp(ALICE, 40000, "239.255.255.250", 1900, SEARCH)
    frame = frames.eth_header(multicast_mac(ip("239.255.255.250")), MAC_ALICE, frames.ETH_IPV4) + search
    router.handle(0, frame, "miss")
    assert kernel.got == [search] and dp.sent == []
    router.handle(1, frame, "miss")  # the same on the outside: dropped, counted
    assert kernel.got == [search] and dp.sent == [] and router.drops["multicast"] == 1


def test_a_request_to_the_inside_address_goes_to_the_kernel_and_a_ping_is_answered_by_the_router() -> None:
    router, dp, kernel = _router()
    request = build.udp(ALICE, 5350, GW, 5351, b"\x00\x00")
    router.handle(0, frames.eth_header(MAC_IN, MAC_ALICE, frames.ETH_IPV4) + request, "miss")
    assert kernel.got == [request] and dp.sent == []
    router.handle(0, frames.eth_header(MAC_IN, MAC_ALICE, frames.ETH_IPV4) + build.icmp_echo(ALICE, GW, 7, 1), "miss")
    assert len(kernel.got) == 1 and router.sent["echo-replies"] == 1


def test_the_kernels_answers_leave_unicast_to_the_asker_and_multicast_on_the_inside() -> None:
    router, dp, _kernel = _router()
    answer = build.udp(GW, 5351, ALICE, 5350, b"\x00\x80")
    router.send_from_kernel(answer, ip(GW))
    announce = build.udp(GW, 5351, "224.0.0.1", 5350, b"\x00\x80", ttl=1)
    router.send_from_kernel(announce, ip(GW))
    assert dp.sent == [(0, MAC_ALICE + MAC_IN + b"\x08\x00" + answer),
                       (0, bytes.fromhex("01005e000001") + MAC_IN + b"\x08\x00" + announce)]
