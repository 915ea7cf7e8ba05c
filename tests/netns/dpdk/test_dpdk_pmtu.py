"""Path MTU through a DPDK gateway: DF packets over the egress MTU get frag-needed (RFC 1191).

The gateway copies its namespace's MTUs (re-read every 2 s), so a test lowers one
with ``ip link set`` as an operator would. Inbound first (the server learns the
path MTU and a TCP download still completes), then outbound (ping -M do is told
the next-hop MTU by the gateway's inside address).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from dpdk_kit import E2E, client, inside_address, lab_of, on_dpdk, python, run
from labkit import stop

pytestmark = [pytest.mark.netns, pytest.mark.datapaths("dpdk")]

REREAD = 2.5


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def lab(request):
    data = yaml.safe_load((E2E / "e2e-one-nat.yaml").read_text())
    yield from lab_of(on_dpdk(data, nat={"workers": request.param}))


def set_mtu(lab, iface: str, mtu: int) -> None:
    gw = lab.state.gateways["nat"]["netns"]
    subprocess.run(["ip", "-n", gw, "link", "set", iface, "mtu", str(mtu)], check=True)
    time.sleep(REREAD)


def sent(lab, what: str) -> int:
    return client(lab, "nat").counters()["gateway"]["dpdk_router"]["sent"].get(what, 0)


SENDER = r"""
import socket, sys
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
conn, _ = srv.accept()
conn.sendall(b"z" * int(sys.argv[2]))
conn.close()
"""

RECEIVER = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
n = 0
while chunk := s.recv(1 << 16):
    n += len(chunk)
print(n)
"""


def server_address(lab) -> str:
    return str(lab.host_address("s1"))


def test_inbound_segments_over_the_inside_mtu_get_frag_needed_and_the_download_completes(lab):
    set_mtu(lab, "in0", 1400)
    try:
        before = sent(lab, "icmp-3-4")
        server = lab.popen("s1", [sys.executable, "-c", SENDER, "5001", str(4 << 20)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "listening", server.stderr.read()
            out = python(lab, "alice", RECEIVER, server_address(lab), 5001, timeout=90)
        finally:
            stop(server)
        assert out.strip() == str(4 << 20)
        assert sent(lab, "icmp-3-4") > before
    finally:
        set_mtu(lab, "in0", 1500)


def test_outbound_df_over_the_outside_mtu_is_told_the_next_hop_mtu(lab):
    set_mtu(lab, "out0", 1400)
    try:
        done = run(lab, "alice", ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1472",
                                  server_address(lab)], timeout=20)
        assert f"From {inside_address(lab, 'nat')}" in done.stdout, done.stdout + done.stderr
        assert "Frag needed and DF set (mtu = 1400)" in done.stdout, done.stdout
        small = run(lab, "alice", ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1372",
                                   server_address(lab)], timeout=20)
        assert small.returncode == 0, small.stdout
    finally:
        set_mtu(lab, "out0", 1500)
