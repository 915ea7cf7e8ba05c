"""Whole paths through DPDK gateways: ping, traceroute (UDP, ICMP, TCP), a TCP download.

The lab is e2e-double-nat.yaml with every gateway on dpdk: alice behind
home-router (af_xdp) behind cgn (af_packet, so both drivers carry traffic), bob
behind nat-b (auto). With the kernel out of the path the gateways answer ARP and
ping, decrement TTLs and send time exceeded themselves: what traceroute shows is
their work.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from dpdk_kit import E2E, client, inside_address, lab_of, on_dpdk, python, run
from labkit import stop

pytestmark = [pytest.mark.netns, pytest.mark.datapaths("dpdk")]

SERVER = "198.51.100.100"


DRIVERS = {1: {"cgn": "af_packet", "home-router": "af_xdp"}, 2: {"cgn": "af_packet", "home-router": "af_packet"}}


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def lab(request):
    """Every path once with one poll loop and once with two workers (af_packet then)."""
    workers = request.param
    data = yaml.safe_load((E2E / "e2e-double-nat.yaml").read_text())
    options = {gw: {"workers": workers, "driver": driver} for gw, driver in DRIVERS[workers].items()}
    options["nat-b"] = {"workers": workers}
    yield from lab_of(on_dpdk(data, **options))


def test_the_gateways_run_on_the_drivers_and_workers_asked_for(lab):
    workers = lab.topology.node("cgn").datapath_options["dpdk"]["workers"]
    for gw, driver in DRIVERS[workers].items():
        dpdk = client(lab, gw).counters()["gateway"]
        assert dpdk["dpdk_drivers"] == f"{driver},{driver}"
        assert dpdk["dpdk"].get("workers", 1) == workers


@pytest.mark.parametrize("host, target", [
    ("alice", "gateway"), ("alice", SERVER), ("bob", SERVER), ("alice", "pool"),
])
def test_ping_reaches_the_gateway_and_crosses_it(lab, host, target):
    if target == "gateway":
        target = inside_address(lab, "home-router")
    elif target == "pool":
        target = lab.state.gateways["home-router"]["pool"][0]  # the NAT answers its own external address
    done = run(lab, host, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", target], timeout=20)
    assert done.returncode == 0 and "3 received" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("method", ["-U", "-I", "-T"], ids=["udp", "icmp", "tcp"])
def test_traceroute_through_two_dpdk_nats_shows_every_hop(lab, method):
    done = run(lab, "alice", ["traceroute", "-n", "-q1", "-w2", "-m", "6", method, SERVER], timeout=60)
    assert done.returncode == 0, done.stderr
    hops = [line.split()[1] for line in done.stdout.splitlines()[1:]]
    assert hops == [inside_address(lab, "home-router"), inside_address(lab, "cgn"), SERVER], done.stdout


SENDER = r"""
import random, socket, sys
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
conn, _ = srv.accept()
conn.sendall(random.Random(4787).randbytes(int(sys.argv[2])))
conn.close()
"""

RECEIVER = r"""
import hashlib, random, socket, sys
want = hashlib.sha256(random.Random(4787).randbytes(int(sys.argv[2]))).hexdigest()
s = socket.create_connection((sys.argv[1], int(sys.argv[3])), timeout=30)
got = hashlib.sha256()
n = 0
while chunk := s.recv(1 << 16):
    got.update(chunk)
    n += len(chunk)
print(n, got.hexdigest() == want)
"""


def test_a_tcp_download_through_two_dpdk_nats_arrives_intact_mostly_on_the_fast_path(lab):
    size = 16 << 20
    before = client(lab, "home-router").counters()["gateway"].get("fast_packets_outside", 0)
    server = lab.popen("server", [sys.executable, "-c", SENDER, "5001", str(size)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening", server.stderr.read()
        out = python(lab, "alice", RECEIVER, SERVER, size, 5001, timeout=120)
    finally:
        stop(server)
    assert out.split() == [str(size), "True"]
    counters = client(lab, "home-router").counters()
    fast = counters["gateway"]["fast_packets_outside"] - before
    assert fast > size // 1500 // 2, counters["gateway"]  # most segments never met Python
    assert counters["gateway"]["dpdk_loop"]["slow_errors"] == 0


def test_counters_show_the_c_table_the_router_and_the_ports(lab):
    gw = client(lab, "cgn").counters()["gateway"]
    assert {"fast_hits", "misses", "installs", "entries", "capacity", "table_full"} <= set(gw["dpdk"])
    assert list(gw["dpdk"]["ports"]) == ["in0", "out0"]
    assert gw["dpdk_router"]["neighbours"] >= 1 and "drops" in gw["dpdk_router"]


