"""An idle DPDK gateway does not spin a core (``dpdk.idle: adaptive``, the default).

The measure is the gateway process's own CPU time (utime + stime from
/proc/PID/stat) over a couple of seconds with no traffic: a CPU-time figure,
not a wall-clock one, with a generous bound (half a core; adaptive idle
measures a few per cent here). Traffic still crosses at once afterwards: a
frame ends the nap and the next turns are full speed again.
"""

from __future__ import annotations

import os
import time

import pytest
import yaml

from dpdk_kit import E2E, client, lab_of, on_dpdk, run

pytestmark = [pytest.mark.netns, pytest.mark.datapaths("dpdk")]

SERVER = "203.0.113.100"
WINDOW = 2.0
BOUND = 0.5
"""Of one core, for the whole process (the Python loop and every worker)."""


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def lab(request):
    data = yaml.safe_load((E2E / "e2e-one-nat.yaml").read_text())
    yield from lab_of(on_dpdk(data, nat={"workers": request.param}))


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, window: float) -> float:
    """CPU seconds the process used per second of the window."""
    used, start = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return (cpu_seconds(pid) - used) / (time.monotonic() - start)


def test_an_idle_dpdk_gateway_uses_well_under_one_core(lab):
    pid = lab.state.gateways["nat"]["pid"]
    assert client(lab, "nat").counters()["gateway"]["dpdk_loop"]["idle"] == "adaptive"
    time.sleep(0.5)  # past the start-up's ARP and route reads
    share = cpu_share(pid, WINDOW)
    assert share < BOUND, f"an idle gateway used {share:.0%} of a core"
    counters = client(lab, "nat").counters()["gateway"]
    assert counters["dpdk_loop"]["sleeps"] > 0
    for row in counters["dpdk"].get("per_worker", {}).values():
        assert row["idle_sleeps"] > 0 and row["idle_us"] > 0, row


def test_traffic_after_a_long_idle_crosses_at_once(lab):
    time.sleep(1.0)
    done = run(lab, "alice", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", SERVER], timeout=20)
    assert done.returncode == 0 and "3 received" in done.stdout, done.stdout + done.stderr


def test_busy_idle_never_naps():
    data = yaml.safe_load((E2E / "e2e-one-nat.yaml").read_text())
    for busy in lab_of(on_dpdk(data, nat={"workers": 2, "idle": "busy"})):
        time.sleep(0.5)
        counters = client(busy, "nat").counters()["gateway"]
        assert counters["dpdk_loop"]["idle"] == "busy" and counters["dpdk_loop"]["sleeps"] == 0
        assert all(row["idle_sleeps"] == 0 for row in counters["dpdk"]["per_worker"].values())
        done = run(busy, "alice", ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", SERVER], timeout=20)
        assert done.returncode == 0 and "2 received" in done.stdout, done.stdout + done.stderr


SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[2])))
s.sendto(b"first", (sys.argv[1], 3478))
"""


def test_a_control_request_right_after_a_send_sees_that_packet(lab):
    """The ports are drained before a control request (as NFQUEUE's kernel queue is read in
    order): a napping poller must not let ``mappings`` overtake a packet already sent."""
    from dpdk_kit import python

    nat = client(lab, "nat")
    for port in range(42000, 42010):
        time.sleep(0.3)  # the pollers are napping again
        python(lab, "alice", SEND, SERVER, port)
        mapped = [m for m in nat.mappings() if m.get("internal", "").endswith(f":{port}")]
        assert mapped, f"no mapping for alice:{port} right after its packet left"
