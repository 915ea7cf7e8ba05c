"""Whole paths through DPDK gateways: ping, traceroute (UDP, ICMP, TCP), a TCP download.

The lab is e2e-double-nat.yaml with every gateway on dpdk: alice behind
home-router (af_xdp) behind cgn (af_packet, so both drivers carry traffic), bob
behind nat-b (auto). With the kernel out of the path the gateways answer ARP and
ping, decrement TTLs and send time exceeded themselves: what traceroute shows is
their work.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import yaml

from dpdk_kit import E2E, client, inside_address, lab_of, on_dpdk, python, run
from labkit import stop

pytestmark = [pytest.mark.netns, pytest.mark.datapaths("dpdk")]

SERVER = "198.51.100.100"


DRIVERS = {1: {"cgn": "af_packet", "home-router": "af_xdp"}, 2: {"cgn": "af_packet", "home-router": "af_xdp"}}


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def lab(request):
    """Every path once with one poll loop and once with two workers, each time over both drivers."""
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
        assert dpdk["dpdk"]["pools_packed"] is True  # every mbuf inside its af_xdp UMEM


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


TRACEROUTE = r"""
import json, resource, subprocess, sys, time
start = time.monotonic()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=50)
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr,
                  "wall": time.monotonic() - start, "cpu": use.ru_utime + use.ru_stime}))
"""
STUCK_CPU = 0.3
"""CPU seconds past which a traceroute run was spinning, not waiting (a sound one uses a few ms)."""


def traceroute(lab, method: str, tries: int = 3) -> tuple[dict, list[dict]]:
    """traceroute from alice: (the last run, the runs before it that were stuck).

    traceroute's ICMP and TCP methods read every probe's reply from one raw socket with
    IP_RECVERR. The kernel queues an ICMP error and wakes the reader *before* it sets the
    socket's error flag (raw_err: ip_icmp_error, then sk_err); a reader that takes the
    queued error in between leaves the flag set over an empty error queue. From then on
    poll() reports POLLERR at once, traceroute only ever reads the (empty) error queue, and
    every later reply (the server's) waits unread until the probes time out: hops 3 to 6
    print ``*`` while the process spins at full CPU. Such a run says nothing about the NAT
    (alice's kernel had every reply), so it is run again; the UDP method (a socket per
    probe) cannot meet it. A run that waited calmly and still missed hops fails the test.
    """
    stuck = []
    argv = ["traceroute", "-n", "-q1", "-w2", "-m", "6", method, SERVER]
    for _ in range(tries):
        result = json.loads(python(lab, "alice", TRACEROUTE, *argv, timeout=60))
        if result["cpu"] < STUCK_CPU or len(stuck) == tries - 1:
            return result, stuck
        stuck.append(result)
        warnings.warn(f"traceroute {method} spun {result['cpu']:.2f} s of CPU in {result['wall']:.2f} s "
                      "(the raw socket's stuck error flag, see traceroute()); ran it again")
    raise AssertionError("unreachable")


@pytest.mark.parametrize("method", ["-U", "-I", "-T"], ids=["udp", "icmp", "tcp"])
def test_traceroute_through_two_dpdk_nats_shows_every_hop(lab, method):
    done, stuck = traceroute(lab, method)
    assert done["rc"] == 0, done["err"]
    hops = [line.split()[1] for line in done["out"].splitlines()[1:]]
    assert hops == [inside_address(lab, "home-router"), inside_address(lab, "cgn"), SERVER], (done, stuck)


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


