"""The kernel-cache datapath for real: established flows rewritten by nftables in the gateway's
namespace, and the engine still deciding everything it decides on nfqueue."""

from __future__ import annotations

import pytest

import subprocess

from labkit import wait_for

from .conftest import OUT, flow, flow_bg, in_ns, kc_spec, listening, offload, result, snmp, split

pytestmark = [pytest.mark.netns, pytest.mark.datapaths("kernel-cache")]


def test_a_steady_udp_flow_is_rewritten_in_the_kernel_and_every_packet_is_counted(gwlab):
    client = gwlab.start_gateway(kc_spec(gwlab))
    gwlab.serve_udp(gwlab.outside, 7000)
    seen = flow(gwlab.inside, "udp-client", f"{OUT}:7000", 5000, 300, 0.01)
    assert seen["replies"] == 300 and len(seen["seen"]) == 1 and split(seen["seen"][0])[0] == gwlab.POOL
    counters = client.counters()
    gw, cache = counters["gateway"], counters["gateway"]["kernel_cache"]
    assert counters["translated_out"] == 300 and counters["translated_in"] == 300
    assert gw["packets_inside"] + gw["fast_packets_inside"] == 300
    assert gw["packets_outside"] + gw["fast_packets_outside"] == 300
    assert gw["fast_packets_inside"] > 250 and gw["fast_packets_outside"] > 250  # the kernel did the work
    assert cache["installs"] >= 2 and cache["errors"] == 0 and cache["hits"] == gw["fast_packets_inside"] + \
        gw["fast_packets_outside"]
    [mapping] = client.mappings()
    assert mapping["packets_out"] == 300 and mapping["packets_in"] == 300


@pytest.mark.parametrize("zero", [False, True], ids=["checksum", "checksum-0"])
def test_udp_checksums_are_right_after_the_kernel_rewrite_both_ways(gwlab, zero):
    client = gwlab.start_gateway(kc_spec(gwlab))
    mode = ["zero"] if zero else []
    catch = listening(flow_bg(gwlab, gwlab.outside, "udp-catch", 7000, 1.5))
    flow(gwlab.inside, "udp-raw", f"{OUT}:7000", 5000, 200, 0.005, *mode)
    outward = result(catch)
    [mapping] = client.mappings()
    external = mapping["external"]
    back = listening(flow_bg(gwlab, gwlab.inside, "udp-catch", 5000, 1.5))
    flow(gwlab.outside, "udp-raw", external, 7000, 200, 0.005, *mode)
    inward = result(back)
    for seen in (outward, inward):
        assert seen["received"] == seen["raw"] == 200 and seen["bad"] == 0
        assert seen["zero"] == (200 if zero else 0)  # "no checksum" stays none
    assert snmp(gwlab.outside, "Udp")["InCsumErrors"] == 0 and snmp(gwlab.inside, "Udp")["InCsumErrors"] == 0
    gw = client.counters()["gateway"]
    assert gw["fast_packets_inside"] > 150 and gw["fast_packets_outside"] > 150


def test_a_tcp_stream_with_segmentation_offload_is_cached_with_valid_checksums(gwlab):
    # The gateway computes every checksum in software on the way out, so the receivers
    # check what the kernel's rewrite left in partial-checksum (TSO) super-packets.
    offload(gwlab.gw, "out0", False)
    offload(gwlab.gw, "in0", False)
    client = gwlab.start_gateway(kc_spec(gwlab))
    listening(flow_bg(gwlab, gwlab.outside, "tcp-server", 8000))
    seen = flow(gwlab.inside, "tcp-client", f"{OUT}:8000", 6000, 300, 0.01, 60000)
    assert seen["error"] is None and seen["replies"] == 300 and len(seen["seen"]) == 1
    for ns in (gwlab.inside, gwlab.outside):
        assert snmp(ns, "Tcp")["InCsumErrors"] == 0
    gw = client.counters()["gateway"]
    assert gw["kernel_cache"]["hits"] > 300 and gw["kernel_cache"]["errors"] == 0
    # The client's FIN met the engine and unlinked the connection's entries at once.
    assert wait_for(lambda: client.counters()["gateway"]["kernel_cache"]["closed"] >= 1)


def test_icmp_echo_is_cached_by_identifier_both_ways(gwlab):
    client = gwlab.start_gateway(kc_spec(gwlab))
    done = subprocess.run(in_ns(gwlab.inside, "ping", "-n", "-q", "-c", 150, "-i", 0.01, "-W", 1, OUT),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and " 0% packet loss" in done.stdout, done.stdout
    counters = client.counters()
    gw = counters["gateway"]
    assert counters["translated_out"] == 150 and counters["translated_in"] == 150
    assert gw["fast_packets_inside"] > 100 and gw["fast_packets_outside"] > 100
