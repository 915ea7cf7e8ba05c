"""The Docker backend's pure parts: backend choice, container names, labels, command lines.

These run everywhere (no engine needed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from natlab.errors import LabError, TopologyError
from natlab.gateway.spec import GatewaySpec
from natlab.realisers.docker import containers as docker
from natlab.realisers import registry
from natlab.realisers.netns.state import LabState
from natlab.topology import from_data, load

TWO_HOMES = Path(__file__).resolve().parents[2] / "topologies" / "two-homes.yaml"


def topo_with(**bob) -> dict:
    return {"name": "dk", "networks": {"lan": {"subnet": "10.0.0.0/24"}},
            "hosts": {"bob": {"network": "lan", **bob}}}


def test_the_backend_is_the_callers_then_the_files_then_netns():
    topo = load(TWO_HOMES)
    assert registry.backend_of(topo, None) == "netns"
    assert registry.backend_of(topo, "docker") == "docker"
    filed = from_data({**topo_with(), "backend": "docker"})
    assert registry.backend_of(filed, None) == "docker"
    assert registry.backend_of(filed, "netns") == "netns"
    with pytest.raises(LabError, match="unknown backend"):
        registry.backend_of(topo, "vagrant")


def test_an_image_on_the_netns_backend_is_refused_naming_the_host():
    topo = from_data(topo_with(image="my/app:1"))
    with pytest.raises(TopologyError, match="need the docker backend") as err:
        registry.backend_of(topo, None)
    assert err.value.key == "hosts.bob"
    assert registry.backend_of(topo, "docker") == "docker"


def test_relative_volume_sources_are_relative_to_the_topology_file(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("name: dk\nbackend: docker\nnetworks: {lan: {subnet: 10.0.0.0/24}}\n"
                    "hosts:\n  bob: {network: lan, image: app, volumes: [./data:/data:ro, named:/v, /abs:/a]}\n")
    bob = load(path).hosts[0]
    assert bob.volumes == (f"{tmp_path}/data:/data:ro", "named:/v", "/abs:/a")


def test_every_container_carries_the_labs_labels():
    argv = docker.sandbox_argv("dk", "bob", "natlab:latest")
    assert ["--label", "natlab.lab=dk"] == argv[argv.index("natlab.lab=dk") - 1:argv.index("natlab.lab=dk") + 1]
    assert "natlab.node=bob" in argv and "natlab.role=sandbox" in argv
    assert argv[argv.index("--network") + 1] == "none"
    assert docker.container_name("dk", "bob") == "natlab-dk-bob"
    assert docker.container_name("dk", "bob", "app") == "natlab-dk-bob.app"


def test_a_users_image_joins_the_sandbox_with_its_command_env_and_volumes():
    bob = from_data(topo_with(image="my/app:1", command="serve --port 4000",
                              env={"A": "1"}, volumes=["/data:/data"])).hosts[0]
    argv = docker.app_argv("dk", bob, "natlab:latest")
    assert argv[argv.index("--network") + 1] == "container:natlab-dk-bob"
    assert argv[-4:] == ["my/app:1", "serve", "--port", "4000"]
    assert ["-e", "A=1"] == argv[argv.index("-e"):argv.index("-e") + 2]
    assert ["-v", "/data:/data"] == argv[argv.index("-v"):argv.index("-v") + 2]
    assert "--cap-add" not in argv  # routes are set from outside


def test_a_command_without_image_runs_in_natlabs_image_with_sh():
    bob = from_data(topo_with(command="echo hi; sleep 9")).hosts[0]
    argv = docker.app_argv("dk", bob, "natlab:latest")
    assert argv[-5:] == ["--entrypoint", "sh", "natlab:latest", "-c", "echo hi; sleep 9"]


def test_the_gateway_gets_net_admin_the_run_dir_and_its_named_namespace():
    spec = GatewaySpec(lab="dk", name="nat", netns="natlab-dk-nat", inside_ifaces=("in0",),
                       outside_iface="out0", inside_subnets=("10.0.0.0/24",),
                       outside_subnet="192.0.2.0/24", pool=("192.0.2.1",), preset="full-cone",
                       policy={}, seed=0, run_dir="/run/natlab/dk")
    argv = docker.gateway_argv(spec, "natlab:latest")
    assert argv[argv.index("--network") + 1] == "container:natlab-dk-nat"
    assert "NET_ADMIN" in argv
    assert "/run/natlab/dk:/run/natlab/dk" in argv
    assert "/run/netns/natlab-dk-nat:/run/netns/natlab-dk-nat:ro" in argv
    assert argv[-2:] == ["/run/natlab/dk/gw-nat.json", "/run/natlab/dk/gw-nat.log"]


def test_plan_records_every_container_before_any_exists():
    topo = load(TWO_HOMES)
    state = LabState.new(topo.name)
    docker.plan(topo, state)
    assert state.backend == "docker"
    assert state.containers["nat-a"] == {"sandbox": "natlab-two-homes-nat-a",
                                         "gateway": "natlab-two-homes-nat-a.gateway"}
    assert state.containers["alice"] == {"sandbox": "natlab-two-homes-alice"}


def test_exec_goes_to_the_app_then_the_gateway_then_the_sandbox():
    topo = from_data(topo_with(image="my/app:1"))
    state = LabState.new("dk")
    state.hosts["bob"] = {"netns": "natlab-dk-bob"}
    docker.plan(topo, state)
    assert docker.exec_argv(state, "bob", ["id"]) == ["docker", "exec", "-i", "natlab-dk-bob.app", "id"]
