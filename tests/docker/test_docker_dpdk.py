"""A Docker lab whose gateway runs on the DPDK datapath: traffic crosses it, ping is the
router's, and port mapping is served through its TUN (natlab.datapaths.dpdk.local)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

import natlab.lab
from natlab.datapaths import registry
from natlab.gateway.client import GatewayClient
from natlab.realisers.docker import containers as docker
from natlab.topology import from_data

from .conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.datapaths("dpdk")]

REFLECT = "python -m natlab.probe udp-reflect --port 4000 --count 1000 --timeout 120"


@pytest.fixture
def dpdk_lab(lab_name):
    if why := registry.unavailable("dpdk"):
        pytest.skip(f"the dpdk datapath is unavailable: {why}")
    if why := docker.image_lacks(docker.natlab_image(), "dpdk"):
        pytest.skip(f"the natlab image {docker.natlab_image()} predates DPDK ({why}); rebuild it: "
                    "bash docker/build-image.sh --base natlab-base:local")
    data = yaml.safe_load((REPO / "topologies" / "two-homes.yaml").read_text())
    data.update(name=lab_name, backend="docker")
    data["gateways"]["nat-a"].update(behaviour="home-router-internal-hairpin", datapath="dpdk",
                                     dpdk={"driver": "af_packet"})
    data["gateways"]["nat-b"].update(datapath="dpdk", dpdk={"driver": "af_packet"})  # AF_XDP: not in a container
    data["hosts"]["server"]["command"] = REFLECT
    with natlab.lab.up(from_data(data)) as lab:
        yield lab


def in_container(lab, node: str, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(docker.exec_argv(lab.state, node, argv), capture_output=True, text=True, timeout=60)


def test_a_docker_labs_dpdk_gateway_translates_answers_ping_and_maps_ports(dpdk_lab):
    lab = dpdk_lab
    nat_a = GatewayClient(lab.state.gateways["nat-a"]["control_socket"])
    stats = nat_a.counters()["gateway"]
    assert stats["dpdk_drivers"] == "af_packet,af_packet", stats.get("dpdk_drivers")
    # UDP from alice's container through the DPDK NAT to the server and back (the server's
    # reflector starts in its own container after the lab is up: a few tries)
    for _ in range(4):
        done = in_container(lab, "alice", ["python", "-m", "natlab.probe", "udp-send", "--to",
                                           "203.0.113.100:4000", "--sport", "6000", "--message", "hi",
                                           "--timeout", "3"])
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["data"].startswith("seen 203.0.113.")
    assert any(m["internal"].endswith(":6000") for m in nat_a.mappings()), nat_a.mappings()
    # ping to the gateway's inside address: the router answers
    gw = str(lab.topology.node("nat-a").leg_on(lab.topology.node("nat-a").inside).addresses[0].ip)
    done = in_container(lab, "alice", ["ping", "-c", "2", "-W", "2", gw])
    assert done.returncode == 0, done.stdout + done.stderr
    # NAT-PMP through the gateway's TUN to its kernel socket, an engine mapping after it
    done = in_container(lab, "alice", ["python", "-c", NATPMP, gw])
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {"result": 0, "public_port": 7000}
    assert any(m["kind"] == "natpmp" and m["external"].endswith(":7000") for m in nat_a.mappings())
    assert nat_a.counters()["gateway"]["dpdk_local"].get("to-kernel.natpmp-pcp", 0) >= 1


NATPMP = r'''
import json, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for _ in range(3):
    s.sendto(struct.pack("!BBHHHI", 0, 1, 0, 7000, 7000, 600), (sys.argv[1], 5351))
    try:
        data, _ = s.recvfrom(64)
        break
    except OSError:
        continue
_v, _op, result, _epoch, _internal, public, _life = struct.unpack("!BBHIHHI", data[:16])
print(json.dumps({"result": result, "public_port": public}))
'''


def test_an_image_without_the_dpdk_runtime_is_refused_before_anything_is_created(lab_name, user_image,
                                                                                  monkeypatch):
    """A natlab image built before it carried DPDK (here: an image that is not natlab's at all)."""
    from natlab.errors import BackendUnavailable
    from natlab.realisers.netns import namespaces as netns

    if why := registry.unavailable("dpdk"):
        pytest.skip(f"the dpdk datapath is unavailable: {why}")
    monkeypatch.setenv(docker.IMAGE_ENV, user_image)
    data = yaml.safe_load((REPO / "topologies" / "two-homes.yaml").read_text())
    data.update(name=lab_name, backend="docker")
    data["gateways"]["nat-a"]["datapath"] = "dpdk"
    data["gateways"]["nat-b"]["datapath"] = "dpdk"
    with pytest.raises(BackendUnavailable) as caught:
        with natlab.lab.up(from_data(data)):
            pass
    assert "gateway 'nat-a' is on the dpdk datapath" in str(caught.value)
    assert user_image in str(caught.value) and "rebuild" in str(caught.value)
    assert docker.lab_containers(lab_name) == [] and netns.lab_namespaces(lab_name) == []
