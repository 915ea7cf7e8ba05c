"""Two homes behind two NATs, realised with Docker; bob runs a user's own image."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import natlab.lab
from natlab.gateway.client import GatewayClient
from natlab.realisers.docker import containers as docker
from natlab.realisers.netns import namespaces as netns
from natlab.realisers.netns.state import run_dir_of
from natlab.topology import from_data

from .conftest import REPO

pytestmark = pytest.mark.docker

REFLECT = "python -m natlab.probe udp-reflect --port 4000 --count 1000 --timeout 120"


def two_homes(name: str, out_dir: Path, user_image: str) -> dict:
    """topologies/two-homes.yaml, bob a user image, the server a command in natlab's image."""
    data = yaml.safe_load((REPO / "topologies" / "two-homes.yaml").read_text())
    data.update(name=name, backend="docker")
    data["hosts"]["bob"].update(image=user_image, command="client 203.0.113.100:4000",
                                env={"MESSAGE": "hello-from-bob", "SPORT": "5555"},
                                volumes=[f"{out_dir}:/out"])
    data["hosts"]["server"]["command"] = REFLECT
    return data


def wait_for_file(path: Path, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)
    return json.loads(path.read_text())


def labelled(lab: str) -> list[str]:
    return docker.lab_containers(lab)


def leftovers(lab: str) -> dict:
    return {"containers": labelled(lab), "namespaces": netns.lab_namespaces(lab),
            "run_dir": run_dir_of(lab).exists()}


def test_user_image_on_bob_exchanges_udp_through_both_nats(lab_name, user_image, tmp_path):
    topo = from_data(two_homes(lab_name, tmp_path, user_image))
    with natlab.lab.up(topo) as lab:
        assert lab.state.backend == "docker"
        # bob's own container: through nat-b (symmetric, pool .21/.22) to the server
        result = wait_for_file(tmp_path / "result.json")
        assert result["reply"] and result["reply"].startswith("seen 203.0.113.2"), result
        seen_ip, seen_port = result["reply"].removeprefix("seen ").split(":")
        nat_b = GatewayClient(lab.state.gateways["nat-b"]["control_socket"])
        bobs = [m for m in nat_b.mappings() if m["internal"] == "192.168.2.2:5555"]
        assert [m["external"] for m in bobs] == [f"{seen_ip}:{seen_port}"]
        # alice (natlab's image) through nat-a, with the probe run in her container
        done = subprocess.run(docker.exec_argv(lab.state, "alice", [
            "python", "-m", "natlab.probe", "udp-send", "--to", "203.0.113.100:4000",
            "--sport", "6000", "--message", "hi", "--timeout", "5"]),
            capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        reply = json.loads(done.stdout.splitlines()[-1])
        assert reply["data"] == "seen 203.0.113.1:6000"  # port-restricted cone preserves it
        nat_a = GatewayClient(lab.state.gateways["nat-a"]["control_socket"])
        assert any(m["internal"] == "192.168.1.2:6000" for m in nat_a.mappings())
        assert any(e["kind"] == "mapping-created" for e in nat_a.events())


def test_exec_runs_in_the_users_container_and_the_api_in_the_namespace(lab_name, user_image, tmp_path):
    topo = from_data(two_homes(lab_name, tmp_path, user_image))
    with natlab.lab.up(topo) as lab:
        env = {**os.environ, "NATLAB_RUN_DIR": str(run_dir_of(lab_name).parent)}
        cli = [sys.executable, "-m", "natlab", "exec", "--lab", lab_name]
        done = subprocess.run([*cli, "bob", "--", "cat", "/app/udp_app.py"], env=env,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "MESSAGE" in done.stdout, done.stderr  # the user's image
        done = subprocess.run([*cli, "alice", "--", "ping", "-c1", "-W5", "203.0.113.100"], env=env,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        # the Python API runs the host's programs in the node's namespace, as on netns
        done = lab.exec("alice", [sys.executable, "-m", "natlab.probe", "udp-send", "--to",
                                  "203.0.113.100:4000", "--sport", "6001", "--message", "x",
                                  "--timeout", "5"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "seen 203.0.113.1:6001" in done.stdout


@pytest.mark.parametrize("lose_state", [False, True], ids=["state-kept", "state-lost"])
def test_down_after_kill_9_removes_everything_by_label(lab_name, user_image, tmp_path, lose_state):
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(two_homes(lab_name, tmp_path, user_image)))
    up = subprocess.Popen([sys.executable, "-m", "natlab", "up", "-q", str(path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(labelled(lab_name)) < 3 and up.poll() is None:
        assert time.monotonic() < deadline, "natlab up made no containers"
        time.sleep(0.05)
    up.send_signal(signal.SIGKILL)
    up.wait()
    time.sleep(2)  # a `docker run` natlab had in flight finishes on its own
    assert labelled(lab_name) and netns.lab_namespaces(lab_name)
    if lose_state:
        subprocess.run(["rm", "-rf", str(run_dir_of(lab_name))], check=True)
    done = subprocess.run([sys.executable, "-m", "natlab", "down", lab_name],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert leftovers(lab_name) == {"containers": [], "namespaces": [], "run_dir": False}


def root_ruleset() -> list[str]:
    """``iptables-save`` of the host without timestamps and packet counters."""
    out = subprocess.run(["iptables-save", "-c"], capture_output=True, text=True, check=True).stdout
    return [line.split("]", 1)[-1] if line.startswith("[") else line.split(" [")[0]
            for line in out.splitlines() if not line.startswith("#")]


def test_host_iptables_unchanged_by_a_docker_lab(lab_name, user_image, tmp_path):
    before = root_ruleset()
    topo = from_data(two_homes(lab_name, tmp_path, user_image))
    with natlab.lab.up(topo) as lab:
        wait_for_file(tmp_path / "result.json")
        GatewayClient(lab.state.gateways["nat-b"]["control_socket"]).set(["timeouts.udp=60"])
        assert root_ruleset() == before
    assert root_ruleset() == before


def test_a_scenario_passes_on_docker_as_on_netns(lab_name, tmp_path):
    # the shipped scenario, on a copy of its topology named for this test (no other lab's name)
    data = yaml.safe_load((REPO / "scenarios" / "mapping-eim-keeps-port.yaml").read_text())
    topo = yaml.safe_load((REPO / "topologies" / "two-homes.yaml").read_text())
    (tmp_path / "topo.yaml").write_text(yaml.safe_dump({**topo, "name": lab_name}))
    scenario = tmp_path / "mapping-eim-keeps-port.yaml"
    scenario.write_text(yaml.safe_dump({**data, "topology": "topo.yaml"}))
    results = {}
    for backend in ("netns", "docker"):
        done = subprocess.run([sys.executable, "-m", "natlab", "run", str(scenario),
                               "--backend", backend], capture_output=True, text=True, timeout=300)
        results[backend] = (done.returncode, done.stdout.split()[0] if done.stdout else "")
        assert results[backend] == (0, "PASSED"), (backend, done.stdout, done.stderr)
