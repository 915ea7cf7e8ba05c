"""The engine's timers stay exact on the kernel-cache datapath: cached packets refresh a
mapping as of the last one (RFC 4787 REQ-5/REQ-6, RFC 5382 REQ-5), in the refresh direction
only, and any op that changes the gateway's state empties the cache at once."""

from __future__ import annotations

import time

import pytest

from .conftest import GwLab, OUT, flow, flow_bg, kc_spec, listening, result, session_elements

pytestmark = [pytest.mark.netns, pytest.mark.datapaths("kernel-cache")]

TIMEOUT = 3.0
"""The mapping timer under test: short, so the idle-out is quick even with ``advance``."""
JIFFIES = 0.05
"""How far apart the engine's idea of the last packet and the sender's may be (the kernel
dates a hit to the jiffy, the listing to the millisecond; the sender stamps after its send)."""


def _mapping(client) -> dict:
    answer = client.request("mappings")
    [mapping] = answer["mappings"]
    return {**mapping, "now": answer["now"]}


def _flow(lab: GwLab, proto: str) -> dict:
    if proto == "udp":
        lab.serve_udp(lab.outside, 7000)
        return flow(lab.inside, "udp-client", f"{OUT}:7000", 5000, 100, 0.04)
    listening(flow_bg(lab, lab.outside, "tcp-server", 8000))
    return flow(lab.inside, "tcp-client", f"{OUT}:8000", 6000, 100, 0.04)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_a_cached_flow_is_kept_alive_to_its_last_packet_and_idles_out_on_time(gwlab, proto):
    timers = {"udp": TIMEOUT, "tcp_established": TIMEOUT, "tcp_transitory": TIMEOUT}
    client = gwlab.start_gateway(kc_spec(gwlab, {"timeouts": timers}))
    seen = _flow(gwlab, proto)  # 4 s of traffic: longer than the timer, refreshed by cached packets
    assert seen["replies"] == 100 and len(seen["seen"]) == 1, seen
    counters = client.counters()
    assert counters["mappings_created"] == 1 and counters["gateway"]["fast_packets_inside"] > 50
    mapping = _mapping(client)
    # The engine dates the mapping's refresh from the last packet the kernel rewrote; for
    # TCP the client's FIN (through the engine) comes right after its last segment.
    assert mapping["expires"] - TIMEOUT == pytest.approx(seen["last_sent"], abs=JIFFIES + (0.5 if proto == "tcp" else 0))
    left = mapping["expires"] - mapping["now"]
    client.advance(left - 0.3)
    assert len(client.mappings()) == 1  # not a moment early
    client.advance(0.6)
    assert client.mappings() == []  # nor late


@pytest.mark.parametrize("refresh, all_pass", [("outbound", False), ("both", True)])
def test_cached_inbound_traffic_refreshes_a_mapping_only_if_the_policy_says_so(gwlab, refresh, all_pass):
    client = gwlab.start_gateway(kc_spec(gwlab, {"timeouts": {"udp": TIMEOUT}, "refresh": refresh}))
    flow(gwlab.inside, "udp-raw", f"{OUT}:7000", 5000, 1, 0)  # the mapping, and the one outbound packet
    before = _mapping(client)
    catch = listening(flow_bg(gwlab, gwlab.inside, "udp-catch", 5000, 1.5))
    sent = flow(gwlab.outside, "udp-raw", before["external"], 7000, 125, 0.04)  # 5 s inbound, cached
    got = result(catch)
    counters = client.counters()
    in_time = sum(1 for i in range(125) if sent["start"] + i * 0.04 < before["expires"])
    if all_pass:
        assert counters["gateway"]["fast_packets_outside"] > 20
        assert got["received"] == 125 and counters["mappings_expired"] == 0
        return
    # Outbound refresh only: the mapping ends on its outbound packet's timer, cached
    # inbound traffic or not; what came after was dropped. (A loaded machine's sender
    # gets fewer packets in before the expiry: most of those that did were cached.)
    assert counters["gateway"]["fast_packets_outside"] > in_time // 3, (counters["gateway"], in_time)
    assert abs(got["received"] - in_time) <= 2, (got, in_time)
    assert counters["mappings_expired"] == 1 and counters["drops"]["no-mapping"] >= 125 - in_time - 2


OPS = {
    "set": lambda c: c.set(["timeouts.udp=150"]),
    "advance": lambda c: c.advance(1),
    "flush": lambda c: c.flush(),
    "configure": lambda c: c.configure("rfc-recommended"),
    "set-pool": lambda c: c.set_pool([GwLab.POOL]),
}


@pytest.mark.parametrize("op", list(OPS))
def test_a_live_change_empties_the_cache_before_it_answers(gwlab, op):
    client = gwlab.start_gateway(kc_spec(gwlab, quantum=10.0))  # entries outlive the flow
    gwlab.serve_udp(gwlab.outside, 7000)
    seen = flow(gwlab.inside, "udp-client", f"{OUT}:7000", 5000, 50, 0.01)
    assert seen["replies"] == 50
    assert session_elements(gwlab)["out_udp"] == 1 and session_elements(gwlab)["in_udp"] == 1
    OPS[op](client)
    assert sum(session_elements(gwlab).values()) == 0  # nothing cached translates after the op
    counters = client.counters()
    cache = counters["gateway"]["kernel_cache"]
    assert cache["entries"] == 0 and cache["flushes"] >= 1
    assert counters["gateway"]["fast_packets_inside"] + counters["gateway"]["packets_inside"] == 50
    if op != "flush" and op != "configure":  # a reboot starts the counters afresh
        assert counters["translated_out"] == 50


def test_entries_idle_out_in_the_kernel_within_one_quantum(gwlab):
    client = gwlab.start_gateway(kc_spec(gwlab, quantum=1.0))
    gwlab.serve_udp(gwlab.outside, 7000)
    flow(gwlab.inside, "udp-client", f"{OUT}:7000", 5000, 30, 0.01)
    time.sleep(1.2)
    assert sum(session_elements(gwlab).values()) == 0
    assert client.counters()["gateway"]["kernel_cache"]["entries"] == 0
