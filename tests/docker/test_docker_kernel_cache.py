"""Docker gateways on kernel-cache, the default datapath: established flows are rewritten in the
gateway container's kernel, and a gateway killed with SIGKILL fails closed within one quantum,
with nothing left that ``natlab down`` cannot remove."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import natlab.lab
from natlab.datapaths import registry
from natlab.gateway.client import GatewayClient
from natlab.realisers.docker import containers as docker
from natlab.realisers.netns import namespaces as netns
from natlab.realisers.netns import procs
from natlab.realisers.netns.state import run_dir_of
from natlab.topology import from_data

from kernelcache_kit import FLOWKIT, assert_failed_closed, kill_under_a_cached_flow
from labkit import wait_for

pytestmark = pytest.mark.docker

SERVER = "203.0.113.100"
POOL = "203.0.113.1"
QUANTUM = 1.0


def topology(name: str, **gateway) -> dict:
    return {"name": name, "backend": "docker",
            "networks": {"outside": {"subnet": "203.0.113.0/24"}, "inside": {"subnet": "192.168.61.0/24"}},
            "gateways": {"gw": {"behaviour": "rfc-recommended", "inside": "inside", "outside": "outside",
                                "pool": [POOL], **gateway}},
            "hosts": {"alice": {"network": "inside"}, "server": {"network": "outside", "address": SERVER}}}


def nft_tables(ns: str | None = None) -> str:
    argv = ["nft", "list", "tables"]
    done = subprocess.run(["ip", "netns", "exec", ns, *argv] if ns else argv, capture_output=True, text=True)
    return done.stdout


@pytest.fixture
def kernel_cache_in_image() -> None:
    """The natlab image has python3-nftables (docker/build-image.sh after the package was added)."""
    done = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python", docker.natlab_image(), "-c",
                           "from natlab.datapaths.kernelcache.lib import missing; print(missing() or '')"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"rebuild the image (bash docker/build-image.sh): {done.stdout.strip()}"


@pytest.mark.any_datapath  # about the default itself: no --natlab-datapath forcing it
def test_a_docker_gateway_with_no_datapath_key_runs_on_kernel_cache_and_rewrites_in_its_kernel(
        lab_name, kernel_cache_in_image):
    if os.environ.get(registry.ENV):
        pytest.skip(f"{registry.ENV} forces every gateway's datapath")
    with natlab.lab.up(from_data(topology(lab_name))) as lab:
        assert lab.state.gateways["gw"]["datapath"] == registry.default() == "kernel-cache"
        assert "natlab_kc" in nft_tables(lab.netns("gw"))
        server = lab.popen("server", [sys.executable, "-m", "natlab.probe", "udp-reflect", "--port", "7000",
                                      "--count", "300", "--timeout", "60"], stdout=subprocess.DEVNULL)
        try:
            done = lab.exec("alice", [sys.executable, str(FLOWKIT), "udp-client", f"{SERVER}:7000", "5000", "300",
                                      "0.01"], capture_output=True, text=True, timeout=90)
        finally:
            server.kill()
            server.wait()
        assert done.returncode == 0, done.stderr
        client = GatewayClient(lab.state.gateways["gw"]["control_socket"])
        gateway = client.counters()["gateway"]
        assert gateway["fast_packets_inside"] > 200, gateway  # the kernel did the work, counted back
        assert gateway["kernel_cache"]["errors"] == 0
    assert "natlab_kc" not in nft_tables()


@pytest.mark.datapaths("kernel-cache")
def test_a_killed_docker_gateway_stops_cached_traffic_within_a_quantum_and_down_leaves_nothing(
        lab_name, kernel_cache_in_image):
    topo = from_data(topology(lab_name, datapath="kernel-cache", kernel_cache={"quantum": QUANTUM}))
    lab = natlab.lab.up(topo)
    try:
        gw = lab.state.gateways["gw"]
        assert gw["datapath"] == "kernel-cache" and "natlab_kc" in nft_tables(lab.netns("gw"))
        seen, killed = kill_under_a_cached_flow(lab, gw["pid"], SERVER)
        assert_failed_closed(seen, killed, POOL, QUANTUM)
        assert procs.start_time(gw["pid"]) is None
        assert wait_for(lambda: docker.container_states([f"{netns.ns_name(lab_name, 'gw')}.gateway"])
                        .get(f"{netns.ns_name(lab_name, 'gw')}.gateway", {}).get("state") == "exited", timeout=10)
    finally:
        done = subprocess.run([sys.executable, "-m", "natlab", "down", lab_name], capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stderr
    assert docker.lab_containers(lab_name) == [] and netns.lab_namespaces(lab_name) == []
    assert not run_dir_of(lab_name).exists()
    assert "natlab_kc" not in nft_tables()  # nothing was ever made outside the lab's namespaces
