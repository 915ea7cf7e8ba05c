"""Third-party port mapping clients against a natlab gateway on real namespaces (root).

Debian's natpmpc and upnpc (miniupnpc), PyPI's NAT-PMP and async-upnp-client, and
natlab's own PCP client each map a port on the gateway ``nat``; every mapping is then
reachable from the outside host through the mapped port (real kernel sockets), shows
in the gateway's table with its kind, and is gone after the client deletes it.
miniupnpc treats 203.0.113.0/24 as a reserved range and calls such an IGD
"not connected"; ``-i`` tells it to go on anyway. On the dpdk datapath (the DPDK tier runs
it with one poll loop and with two workers: ``dpdk,dpdk:workers=2``) the servers are
reached through the gateway's TUN (:mod:`natlab.datapaths.dpdk.local`).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Iterator

import pytest

import natlab.lab
from natlab.realisers.base import Probe
from natlab.realisers.netns.driver import NetnsDriver

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("needs_daemon")]

HERE = Path(__file__).parent
GW, ALICE, EXTERNAL = "192.168.1.1", "192.168.1.10", "203.0.113.1"


@pytest.fixture(scope="module")
def lab(natlab_datapath) -> Iterator[natlab.lab.Lab]:
    """The gateway on the run's datapath (``--natlab-datapath dpdk,dpdk:workers=2``: both)."""
    import secrets

    import yaml

    from natlab.topology import from_data

    data = yaml.safe_load((HERE / "portmap-lab.yaml").read_text())
    with natlab.lab.up(from_data({**data, "name": f"t{secrets.token_hex(3)}"})) as lab:
        yield lab


@pytest.fixture
def driver(lab) -> NetnsDriver:
    d = NetnsDriver(lab)
    d.reboot("nat")  # every test starts from an empty table
    return d


def needs(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (install.sh installs it)")


def reachable(driver: NetnsDriver, proto: str, port: int, listen: int) -> bool:
    """An outside host's packet (or TCP connect) to EXTERNAL:port arrives at alice:listen."""
    result = driver.probe(Probe(proto=proto, src="server", dst=EXTERNAL, dport=port, receiver="alice",
                                listen_port=listen, timeout=1.0))
    return result.delivered


def kinds(driver: NetnsDriver) -> dict[str, str]:
    return {row["external"]: row["kind"] for row in driver.mappings("nat")}


def run(lab, argv: list[str], timeout: float = 30) -> str:
    done = lab.exec("alice", argv, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout


def test_natpmpc_maps_a_port_the_outside_reaches_and_deletes_it(lab, driver):
    needs("natpmpc")
    said = run(lab, ["natpmpc", "-g", GW, "-a", "5000", "5000", "udp", "3600"])
    assert re.search(r"Mapped public port 5000 protocol UDP to local port 5000", said), said
    assert "Public IP address : 203.0.113.1" in said
    assert kinds(driver)[f"{EXTERNAL}:5000"] == "natpmp"
    assert reachable(driver, "udp", 5000, 5000)
    run(lab, ["natpmpc", "-g", GW, "-a", "5000", "5000", "udp", "0"])
    assert f"{EXTERNAL}:5000" not in kinds(driver)
    assert not reachable(driver, "udp", 5000, 5000)


def test_upnpc_adds_a_tcp_mapping_the_outside_connects_to_and_deletes_it(lab, driver):
    needs("upnpc")
    said = run(lab, ["upnpc", "-i", "-e", "natlab-e2e", "-a", ALICE, "6000", "6000", "TCP", "3600"])
    assert "is redirected to internal 192.168.1.10:6000" in said, said
    assert kinds(driver)[f"{EXTERNAL}:6000"] == "upnp"
    listing = run(lab, ["upnpc", "-i", "-l"])
    assert re.search(r"TCP\s+6000->192\.168\.1\.10:6000\s+'natlab-e2e'", listing), listing
    assert reachable(driver, "tcp", 6000, 6000)
    run(lab, ["upnpc", "-i", "-d", "6000", "TCP"])
    assert f"{EXTERNAL}:6000" not in kinds(driver)
    assert not reachable(driver, "tcp", 6000, 6000)


def test_the_nat_pmp_package_maps_and_unmaps(lab, driver):
    pytest.importorskip("natpmp")
    script = ("import json, natpmp, sys\n"
              "r = natpmp.map_port(natpmp.NATPMP_PROTOCOL_UDP, int(sys.argv[1]), int(sys.argv[1]), "
              "int(sys.argv[2]), gateway_ip=sys.argv[3])\n"
              "print(json.dumps({'public_port': r.public_port, 'lifetime': r.lifetime, 'result': r.result}))\n")
    said = json.loads(run(lab, [sys.executable, "-c", script, "7000", "3600", GW]))
    assert said == {"public_port": 7000, "lifetime": 3600, "result": 0}
    assert kinds(driver)[f"{EXTERNAL}:7000"] == "natpmp"
    assert reachable(driver, "udp", 7000, 7000)
    json.loads(run(lab, [sys.executable, "-c", script, "7000", "0", GW]))
    assert not reachable(driver, "udp", 7000, 7000)


def test_async_upnp_client_finds_the_igd_and_maps_a_port(lab, driver):
    pytest.importorskip("async_upnp_client")
    said = json.loads(run(lab, [sys.executable, str(HERE / "aupnp_map.py"), "add", ALICE, "7100", "UDP"]))
    assert said["ok"] and said["location"] == f"http://{GW}:5000/rootDesc.xml", said
    assert said["external"] == EXTERNAL and said["internal_client"] == ALICE
    assert kinds(driver)[f"{EXTERNAL}:7100"] == "upnp"
    assert reachable(driver, "udp", 7100, 7100)
    said = json.loads(run(lab, [sys.executable, str(HERE / "aupnp_map.py"), "delete", ALICE, "7100", "UDP"]))
    assert said["ok"]
    assert not reachable(driver, "udp", 7100, 7100)


def test_natlabs_pcp_client_maps_refreshes_and_deletes_with_its_nonce(lab, driver):
    base = [sys.executable, "-m", "natlab.portmap.pcp_client", "map", "--server", GW, "--internal-port", "8000",
            "--external-port", "8000", "--timeout", "5"]
    made = json.loads(run(lab, [*base, "--lifetime", "3600"]))
    assert made["result"] == "SUCCESS" and made["external_address"] == EXTERNAL, made
    port = made["external_port"]
    assert kinds(driver)[f"{EXTERNAL}:{port}"] == "pcp"
    assert reachable(driver, "udp", port, 8000)
    stranger = lab.exec("alice", [*base, "--delete"], capture_output=True, text=True, timeout=30)
    assert json.loads(stranger.stdout)["result"] == "NOT_AUTHORIZED"  # another nonce
    gone = json.loads(run(lab, [*base, "--delete", "--nonce", made["nonce"]]))
    assert gone["result"] == "SUCCESS"
    assert f"{EXTERNAL}:{port}" not in kinds(driver)
    assert not reachable(driver, "udp", port, 8000)


def test_natlabs_pcp_client_peer_opens_the_nat_to_that_peer_only(lab, driver):
    """PCP PEER (RFC 6887 section 12): the NAT's own dynamic mapping towards server:7000, made
    before alice sent anything; behind address-and-port-dependent filtering the server's packet
    from 7000 reaches alice through it, one from another port does not."""
    base = [sys.executable, "-m", "natlab.portmap.pcp_client", "peer", "--server", GW, "--internal-port", "8100",
            "--remote", "203.0.113.100:7000", "--timeout", "5"]

    def from_server(port: int, sport: int) -> bool:
        return driver.probe(Probe(proto="udp", src="server", dst=EXTERNAL, dport=port, sport=sport,
                                  receiver="alice", listen_port=8100, timeout=1.0)).delivered
    assert not from_server(8100, 7000)
    made = json.loads(run(lab, [*base, "--external-port", "8100", "--lifetime", "600"]))
    assert made["result"] == "SUCCESS" and made["external_address"] == EXTERNAL, made
    port = made["external_port"]
    assert port == 8100 and made["remote"] == "203.0.113.100:7000" and made["lifetime"] == 600
    assert kinds(driver)[f"{EXTERNAL}:{port}"] == "dynamic"
    assert from_server(port, 7000)
    assert not from_server(port, 7001)
    stranger = lab.exec("alice", [*base, "--delete"], capture_output=True, text=True, timeout=30)
    assert json.loads(stranger.stdout)["result"] == "NOT_AUTHORIZED"  # another nonce
    ended = json.loads(run(lab, [*base, "--delete", "--nonce", made["nonce"]]))
    assert ended["result"] == "SUCCESS" and ended["lifetime"] == 0
    assert kinds(driver)[f"{EXTERNAL}:{port}"] == "dynamic"  # it lives on by its own timer


def test_the_outside_gets_no_answer_on_any_port_mapping_port(lab, driver):
    """NAT-PMP/PCP to the external address, from outside: nothing answers, nothing is counted."""
    script = ("import socket, sys\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.0)\n"
              "s.sendto(bytes([0, 0]), (sys.argv[1], 5351))\n"
              "s.sendto(bytes([2, 1]) + bytes(58), (sys.argv[1], 5351))\n"
              "try:\n    s.recvfrom(2048); print('answered')\nexcept OSError:\n    print('silence')\n")
    before = {k: v for k, v in driver.counters("nat")["gateway"]["portmap"].items() if k != "epoch"}
    done = lab.exec("server", [sys.executable, "-c", script, EXTERNAL], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "silence", done.stdout + done.stderr
    after = {k: v for k, v in driver.counters("nat")["gateway"]["portmap"].items() if k != "epoch"}
    assert after == before


HOSTILE = r'''
import json, socket, sys, time
gw = sys.argv[1]
out = {}
big = socket.create_connection((gw, 5000), timeout=5)
big.sendall(b"POST /ctl/IPConn HTTP/1.1\r\nHOST: x\r\nContent-Length: 1048576\r\n\r\n")
out["huge"] = big.recv(200).split(b"\r\n")[0].decode()
slow = socket.create_connection((gw, 5000), timeout=30)
slow.sendall(b"GET /rootDesc.xml HTTP/1.1\r\n")
t0 = time.monotonic()
out["slow"] = slow.recv(100).decode() or "closed"
out["slow_after"] = round(time.monotonic() - t0)
sub = socket.create_connection((gw, 5000), timeout=5)
sub.sendall(b"SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHOST: x\r\nNT: upnp:event\r\n\r\n")
out["subscribe"] = sub.recv(200).split(b"\r\n")[0].decode()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(0.5)
search = b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nST: upnp:rootdevice\r\n\r\n'
for _ in range(50):
    u.sendto(search, (gw, 1900))
answers = 0
try:
    while True:
        u.recvfrom(4096); answers += 1
except OSError:
    pass
out["ssdp_answers"] = answers
u.sendto(b"\x00\x05junk", (gw, 5351))
u.sendto(b"\x07" * 3, (gw, 5351))
print(json.dumps(out))
'''


def test_hostile_requests_are_refused_counted_and_the_nat_goes_on(lab, driver):
    said = json.loads(run(lab, [sys.executable, "-c", HOSTILE, GW], timeout=60))
    assert said["huge"] == "HTTP/1.1 413 Content Too Large"
    assert said["slow"] == "closed" and said["slow_after"] >= 9  # SLOW_CLIENT: 10 s for a whole request
    assert said["subscribe"] == "HTTP/1.1 501 Not Implemented"
    assert said["ssdp_answers"] == 20  # SSDP_BUDGET per sender and window; the rest dropped
    counters = driver.counters("nat")["gateway"]["portmap"]
    assert counters["upnp.http.refused.body-too-large"] >= 1 and counters["upnp.http.slow-client"] >= 1
    assert counters["ssdp.dropped.rate-limited"] >= 30
    assert counters["upnp.http.eventing-not-implemented"] >= 1
    probe = driver.probe(Probe(proto="udp", src="alice", dst="203.0.113.100", dport=3478, receiver="server"))
    assert probe.delivered  # the NAT itself never stopped


@pytest.mark.datapaths("dpdk")
def test_on_dpdk_the_servers_are_reached_through_the_tun_and_ping_stays_the_routers(lab, driver):
    """The requests reach the kernel's sockets through the gateway's TUN and the answers
    leave by the router; a ping to the gateway's inside address is still the router's."""
    needs("natpmpc")
    before = driver.counters("nat")["gateway"]
    run(lab, ["natpmpc", "-g", GW, "-a", "5400", "5400", "udp", "60"])
    run(lab, ["natpmpc", "-g", GW, "-a", "5400", "5400", "udp", "0"])
    run(lab, ["ping", "-c", "2", "-W", "2", GW])
    after = driver.counters("nat")["gateway"]
    local = after["dpdk_local"]
    assert local.get("to-kernel.natpmp-pcp", 0) >= before["dpdk_local"].get("to-kernel.natpmp-pcp", 0) + 2
    assert local.get("from-kernel.udp", 0) >= before["dpdk_local"].get("from-kernel.udp", 0) + 2
    sent = lambda c: c["dpdk_router"]["sent"].get("echo-replies", 0)  # noqa: E731
    assert sent(after) >= sent(before) + 2
