"""``natlab capture`` of a DPDK gateway shows both legs (AF_XDP frames bypass tcpdump in
the gateway's own namespace, so the capture runs on the switch side of its veths)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from dpdk_kit import E2E, lab_of, on_dpdk, run

pytestmark = [pytest.mark.netns, pytest.mark.datapaths("dpdk")]

SERVER = "203.0.113.100"


@pytest.fixture(scope="module")
def lab():
    data = yaml.safe_load((E2E / "e2e-one-nat.yaml").read_text())
    yield from lab_of(on_dpdk(data))


def test_capture_of_a_dpdk_gateway_shows_the_inside_and_the_outside_leg(lab, tmp_path):
    pcap = tmp_path / "nat.pcap"
    cap = subprocess.Popen([sys.executable, "-m", "natlab", "capture", "nat", "--lab", lab.name,
                            "-o", str(pcap), "--duration", "4"], stderr=subprocess.PIPE, text=True)
    try:
        assert "capturing nat" in cap.stderr.readline()
        done = run(lab, "alice", ["ping", "-n", "-c", "3", "-i", "0.3", "-W", "2", SERVER], timeout=20)
        assert done.returncode == 0, done.stdout
        _, err = cap.communicate(timeout=30)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    assert cap.returncode == 0, err
    shown = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "ip.src", "-e", "ip.dst",
                            "-Y", "icmp"], capture_output=True, text=True, check=True).stdout
    pairs = {tuple(line.split("\t")) for line in shown.splitlines()}
    pool = lab.state.gateways["nat"]["pool"][0]
    assert {("192.168.1.10", SERVER), (pool, SERVER), (SERVER, pool), (SERVER, "192.168.1.10")} <= pairs, shown
