"""Two DPDK workers (checklist section 8): ownership, handoff, counters that add up.

The gateway runs ``dpdk: {workers: 2}``: worker 0 polls the inside port and
worker 1 the outside port, so RX is asymmetric on purpose. A flow belongs to the
worker its inside tuple hashes to; alice runs sixteen UDP flows through a
reflector, some owned by each worker, so each worker receives packets it must
hand to the other.
"""

from __future__ import annotations

import ipaddress
import time

import pytest
import yaml

from dpdk_kit import E2E, client, lab_of, on_dpdk, python
from labkit import start_reflector, stop_reflector
from natlab.datapaths.dpdk.workers import owner_of

pytestmark = [pytest.mark.netns, pytest.mark.datapaths("dpdk")]

FLOWS, PACKETS, FIRST_PORT, REFLECT = 16, 40, 41000, 3478

FLOWS_SCRIPT = r"""
import socket, sys, time
server, first, flows, packets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
socks = []
for i in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", first + i))
    s.settimeout(2)
    socks.append(s)
got = 0
for n in range(packets):
    for s in socks:
        s.sendto(b"ping %d" % n, (server, %(port)d))
    for s in socks:
        try:
            s.recv(2048)
            got += 1
        except socket.timeout:
            pass
    time.sleep(0.005)
print(got)
""".replace("%(port)d", str(REFLECT))


@pytest.fixture(scope="module", params=["af_xdp", "af_packet"])
def lab(request):
    """Two workers over each driver (auto picks af_xdp)."""
    data = yaml.safe_load((E2E / "e2e-one-nat.yaml").read_text())
    for lab in lab_of(on_dpdk(data, nat={"workers": 2, "driver": request.param})):
        reflector = start_reflector(lab, "s1", [f"{lab.host_address('s1')}:{REFLECT}"])
        try:
            yield lab
        finally:
            stop_reflector(reflector)


def owners(lab) -> dict[int, int]:
    alice = int(ipaddress.IPv4Address(str(lab.host_address("alice"))))
    return {port: owner_of(2, 17, alice, port) for port in range(FIRST_PORT, FIRST_PORT + FLOWS)}


def dpdk_counters(lab) -> dict:
    return client(lab, "nat").counters()


def test_the_inside_port_is_polled_by_worker_0_and_the_outside_port_by_worker_1(lab):
    rows = dpdk_counters(lab)["gateway"]["dpdk"]["per_worker"]
    assert {w: row["polls"] for w, row in rows.items()} == {"w0": "in0", "w1": "out0"}
    driver = lab.topology.node("nat").datapath_options["dpdk"]["driver"]
    assert dpdk_counters(lab)["gateway"]["dpdk_drivers"] == f"{driver},{driver}"


def test_flows_are_owned_handed_off_and_counted_on_their_owner_only(lab):
    owned = owners(lab)
    assert set(owned.values()) == {0, 1}, "the flows should land on both workers"
    before = dpdk_counters(lab)
    got = int(python(lab, "alice", FLOWS_SCRIPT, lab.host_address("s1"), FIRST_PORT, FLOWS, PACKETS,
                     timeout=120))
    assert got == FLOWS * PACKETS  # every datagram and its answer crossed
    during = dpdk_counters(lab)
    rows = list(during["gateway"]["dpdk"]["per_worker"].values())
    flows_on = [sum(1 for w in owned.values() if w == i) for i in (0, 1)]
    # Each session's two directions sit in its owner's table only (nothing expired yet
    # within one quantum of the last packet): exactly one worker holds it.
    assert [row["entries"] for row in rows] == [2 * n for n in flows_on]
    assert all(row["misowned"] == 0 for row in rows)
    delta = [{k: row[k] - old[k] for k in row if isinstance(row[k], int)}
             for row, old in zip(rows, before["gateway"]["dpdk"]["per_worker"].values())]
    for i in (0, 1):
        # worker 0 polls inside: it hands worker 1's outbound packets over; worker 1
        # polls outside: it hands worker 0's answers over; every handoff is taken.
        assert delta[i]["handoff_enq"] > 0 and delta[1 - i]["handoff_deq"] == delta[i]["handoff_enq"]
        assert delta[i]["snat"] > 0 and delta[i]["dnat"] > 0  # both directions on the owner
        assert delta[i]["handoff_drop"] == delta[i]["slow_drop"] == delta[i]["tx_drop"] == 0
    # SNAT/DNAT on the owner only: a worker's rewrites never exceed what its flows sent.
    for i in (0, 1):
        assert delta[i]["snat"] <= flows_on[i] * PACKETS and delta[i]["dnat"] <= flows_on[i] * PACKETS


def test_the_aggregate_is_the_sum_of_the_workers_and_the_engine_counts_every_packet(lab):
    time.sleep(0.6)  # a fold (every 0.25 s) has read every worker's counters back
    counters = dpdk_counters(lab)
    dp = counters["gateway"]["dpdk"]
    rows = list(dp["per_worker"].values())
    assert dp["fast_hits"] == sum(r["snat"] + r["dnat"] for r in rows)
    assert dp["aggregate"]["handoff_enq"] == sum(r["handoff_enq"] for r in rows)
    fast = counters["gateway"]["fast_packets_inside"] + counters["gateway"]["fast_packets_outside"]
    assert fast == dp["fast_hits"]  # every rewrite in C was folded into the engine, once
    assert counters["translated_out"] >= FLOWS * PACKETS and counters["translated_in"] >= FLOWS * PACKETS
