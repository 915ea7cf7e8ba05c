"""Lab and gateway commands against fake state files: names, messages, exit codes.

No namespaces are made: labs are state files under a temporary ``NATLAB_RUN_DIR``,
and a "live gateway" is a thread answering the control protocol on a unix socket.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from typer.testing import CliRunner

import natlab.cli  # noqa: F401  (registers the commands)
from natlab.cli.app import app
from natlab.errors import ConfigError, LabError, LabNotFound, NotPrivileged
from natlab.realisers.docker import containers as docker
from natlab.realisers.netns import build as runner
from natlab.realisers.netns.state import LabState, resolve_node
from natlab.behaviours.presets import policy_to_dict, resolve
from natlab.words import plural

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short, empty run directory (unix socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="nlrun"))
    monkeypatch.setenv("NATLAB_RUN_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_lab(name: str, hosts: tuple[str, ...] = (), gateways: tuple[str, ...] = (),
             socket: Callable[[str], str] | None = None, phase: str = "up", **fields: Any) -> LabState:
    state = LabState.new(name)
    state.phase = phase
    for host in hosts:
        state.hosts[host] = {"netns": f"natlab-{name}-{host}", "network": "home",
                             "addresses": ["192.168.1.2"], "pids": [], "pid_starts": {}}
    state.networks["home"] = {"subnet": "192.168.1.0/24", "gateway": gateways[0] if gateways else None}
    for gw in gateways:
        state.gateways[gw] = {"netns": f"natlab-{name}-{gw}", "pid": None, "pid_start": None,
                              "spec_path": None, "behaviour": "port-restricted-cone",
                              "control_socket": socket(gw) if socket else None,
                              "inside": "home", "outside": "internet", "address": "192.168.1.1",
                              "pool": ["203.0.113.1"]}
    for key, value in fields.items():
        setattr(state, key, value)
    state.save()
    return state


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


class FakeGateway:
    """Answers control requests from ``answers[op]`` (a dict, or a function of the request)."""

    def __init__(self, path: Path, answers: dict[str, Any]) -> None:
        self.path, self.answers, self.requests = path, answers, []
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    request = json.loads(line)
                    fake.requests.append(request)
                    answer = fake.answers[request["op"]]
                    answer = answer(request) if callable(answer) else answer
                    self.wfile.write((json.dumps({"ok": True, **answer}) + "\n").encode())

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_gateway(run_dir: Path) -> Iterator[Callable[..., FakeGateway]]:
    made: list[FakeGateway] = []

    def start(name: str, answers: dict[str, Any]) -> FakeGateway:
        fake = FakeGateway(run_dir / f"{name}.sock", answers)
        made.append(fake)
        return fake

    yield start
    for fake in made:
        fake.close()


def live_status(preset: str, **overrides: Any) -> dict[str, Any]:
    return {"preset": preset, "policy": policy_to_dict(resolve(preset, overrides or None).policy)}


# --- which lab a node name means ---------------------------------------------------

def test_exec_finds_the_one_lab_that_has_the_node(run_dir, monkeypatch):
    make_lab("home-a", hosts=("alice",))
    make_lab("home-b", hosts=("bob",))
    seen: list[list[str]] = []
    monkeypatch.setattr("natlab.realisers.netns.namespaces.exists", lambda ns: True)
    monkeypatch.setattr("natlab.cli.lab_cmd.subprocess.run",
                        lambda argv, **kw: seen.append(argv) or subprocess.CompletedProcess(argv, 3))
    result = invoke("exec", "bob", "--", "true")
    assert result.exit_code == 3
    assert seen == [["ip", "netns", "exec", "natlab-home-b-bob", "true"]]


def test_a_node_in_several_labs_lists_the_lab_choices(run_dir):
    make_lab("home-a", hosts=("alice",))
    make_lab("home-b", hosts=("alice",))
    result = invoke("exec", "alice", "--", "true")
    assert isinstance(result.exception, LabNotFound)
    assert result.exception.message == ("'alice' is in several labs; name one: got 'home-a, home-b' "
                                        "(hint: pass --lab home-a or --lab home-b)")


def test_a_node_in_no_lab_names_the_labs_that_are_up(run_dir):
    make_lab("home-a", hosts=("alice",))
    make_lab("home-b", hosts=("bob",))
    result = invoke("shell", "carol")
    assert isinstance(result.exception, LabNotFound)
    assert "no lab that is up has a node named 'carol'" in result.exception.message
    assert "labs up: home-a, home-b" in result.exception.message


def test_with_one_lab_up_an_unknown_node_lists_its_nodes(run_dir):
    make_lab("home-a", hosts=("alice", "server"))
    with pytest.raises(LabNotFound, match="nodes are: alice, server"):
        resolve_node("carol").netns_of("carol")


def test_gateway_commands_find_the_lab_of_a_unique_gateway(run_dir):
    from natlab.cli.gateway_cmd import client_for

    make_lab("home-a", gateways=("nat-a",), socket=lambda gw: f"/a/{gw}.sock")
    make_lab("home-b", gateways=("nat-b",), socket=lambda gw: f"/b/{gw}.sock")
    assert client_for("nat-b").path == Path("/b/nat-b.sock")


def test_a_gateway_in_several_labs_asks_for_lab(run_dir):
    make_lab("home-a", gateways=("nat",))
    make_lab("home-b", gateways=("nat",))
    result = invoke("mappings", "nat")
    assert isinstance(result.exception, LabNotFound)
    assert "pass --lab home-a or --lab home-b" in result.exception.message


def test_a_host_name_does_not_count_for_gateway_commands(run_dir):
    make_lab("home-a", hosts=("nat",))
    make_lab("home-b", gateways=("nat",), socket=lambda gw: f"/b/{gw}.sock")
    from natlab.cli.gateway_cmd import client_for

    assert client_for("nat").path == Path("/b/nat.sock")


# --- up --name and lab names -------------------------------------------------------

@pytest.mark.parametrize("name", ["Caps", "9lives", "a_b", "x" * 32, ""])
def test_up_name_rejects_names_that_cannot_name_namespaces(name):
    from natlab.topology import load

    with pytest.raises(ConfigError, match="bad lab name"):
        runner.renamed(load(REPO / "topologies/two-homes.yaml"), name)


def test_up_name_renames_the_lab_and_everything_derived(run_dir):
    from natlab.topology import load

    topo = runner.renamed(load(REPO / "topologies/two-homes.yaml"), "second")
    state = runner.plan_state(topo)
    assert state.name == "second" and state.run_dir == str(run_dir / "second")
    assert state.hosts["alice"]["netns"] == "natlab-second-alice"
    assert "natlab-second-sw" in state.namespaces


def test_a_control_socket_path_too_long_is_refused_before_anything_is_made(monkeypatch):
    from natlab.topology import load

    monkeypatch.setenv("NATLAB_RUN_DIR", "/run/" + "d" * 80)
    topo = runner.renamed(load(REPO / "topologies/two-homes.yaml"), "x" * 31)
    with pytest.raises(ConfigError, match="control socket path too long"):
        runner.check_paths(topo)


def test_up_name_with_a_bad_name_is_one_clear_error():
    result = invoke("up", "--name", "Bad_Name", str(REPO / "topologies/two-homes.yaml"))
    assert isinstance(result.exception, ConfigError)
    assert "bad lab name: got 'Bad_Name'" in result.exception.message


# --- down --------------------------------------------------------------------------

def test_down_of_a_typo_is_an_error_with_did_you_mean(run_dir):
    make_lab("nu-ok")
    result = invoke("down", "nu-okk")
    assert isinstance(result.exception, LabNotFound)
    assert result.exception.message.startswith("no lab named 'nu-okk' (hint: did you mean 'nu-ok'? labs up: ")
    assert (run_dir / "nu-ok").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="removing a lab needs root")
def test_down_of_a_half_built_lab_removes_its_run_dir(run_dir):
    name = f"t{secrets.token_hex(3)}"
    make_lab(name, hosts=("alice",), phase="building")
    result = invoke("down", "--lab", name)
    assert result.exit_code == 0, result.output
    assert f"lab {name} is down" in result.output
    assert not (run_dir / name).exists()


def test_down_with_two_different_lab_names_is_refused(run_dir):
    result = invoke("down", "a", "--lab", "b")
    assert isinstance(result.exception, ConfigError)


# --- status, hosts, json -----------------------------------------------------------

def test_status_shows_the_live_preset_class_and_changed_knobs(run_dir, fake_gateway):
    fake = fake_gateway("nat-a", {"status": live_status("symmetric", timeouts={"udp": 30})})
    make_lab("home-a", hosts=("alice",), gateways=("nat-a",), socket=lambda gw: str(fake.path))
    result = invoke("status")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("│ nat-a"))
    for word in ("symmetric", "(was port-restricted-cone)", "APDM/APDF", "timeouts.udp=30"):
        assert word in row


def test_status_json_carries_the_live_policy(run_dir, fake_gateway):
    fake = fake_gateway("nat-a", {"status": live_status("full-cone")})
    make_lab("home-a", hosts=("alice",), gateways=("nat-a",), socket=lambda gw: str(fake.path))
    (lab,) = json.loads(invoke("status", "--json").output)
    live = lab["gateways"]["nat-a"]["live"]
    assert live == {"preset": "full-cone", "class": "EIM/EIF", "mapping": "endpoint-independent",
                    "filtering": "endpoint-independent", "changed": {}}
    assert lab["hosts"]["alice"]["addresses"] == ["192.168.1.2"]


def test_status_of_a_gateway_that_does_not_answer_shows_its_topology_preset(run_dir):
    make_lab("home-a", gateways=("nat-a",), socket=lambda gw: str(run_dir / "gone.sock"))
    (lab,) = json.loads(invoke("status", "-l", "home-a", "--json").output)
    assert lab["gateways"]["nat-a"]["live"] is None
    assert lab["gateways"]["nat-a"]["behaviour"] == "port-restricted-cone"


def test_status_of_no_lab_says_how_to_make_one(run_dir):
    assert invoke("status").output.strip() == "no lab is up (natlab up FILE)"
    assert json.loads(invoke("status", "--json").output) == []


def test_hosts_json_lists_addresses(run_dir):
    make_lab("home-a", hosts=("alice",))
    data = json.loads(invoke("hosts", "--json").output)
    assert data["alice"]["addresses"] == ["192.168.1.2"]


# --- configure ---------------------------------------------------------------------

def test_configure_switches_the_preset_and_prints_what_it_became(run_dir, fake_gateway):
    def answer(request):
        status = live_status(request["behaviour"], **request["overrides"])
        return {**status, "events": 1}

    fake = fake_gateway("nat-a", {"configure": answer})
    make_lab("home-a", gateways=("nat-a",), socket=lambda gw: str(fake.path))
    result = invoke("configure", "nat-a", "symmetric", "timeouts.udp=30")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "nat-a: symmetric (APDM/APDF), mappings flushed (1 event)",
        "nat-a: timeouts.udp = 30"]
    assert fake.requests[-1] == {"op": "configure", "behaviour": "symmetric",
                                 "overrides": {"timeouts": {"udp": 30}}}


def test_configure_with_an_unknown_preset_fails_before_asking_the_gateway(run_dir, fake_gateway):
    fake = fake_gateway("nat-a", {})
    make_lab("home-a", gateways=("nat-a",), socket=lambda gw: str(fake.path))
    result = invoke("configure", "nat-a", "symetric")
    assert isinstance(result.exception, ConfigError)
    assert "symmetric" in result.exception.message and fake.requests == []


# --- output ------------------------------------------------------------------------

def test_piped_mapping_tables_are_never_cut(run_dir, fake_gateway):
    row = {"protocol": "udp", "internal": "192.168.100.200:54321", "external": "203.0.113.222:54321",
           "remote": "198.51.100.123:3478 (address-and-port-dependent)", "sessions": [1, 2],
           "expires_in": 299.5, "packets_out": 123456789, "packets_in": 987654321}
    fake = fake_gateway("nat-a", {"mappings": {"mappings": [row]}})
    make_lab("home-a", gateways=("nat-a",), socket=lambda gw: str(fake.path))
    result = invoke("mappings", "nat-a")
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    for value in (row["internal"], row["external"], row["remote"], "987654321"):
        assert value in result.output
    assert "nat-a: 1 mapping" in result.output


def test_piped_behaviours_table_is_never_cut():
    result = invoke("behaviours")
    assert result.exit_code == 0 and "…" not in result.output


@pytest.mark.parametrize("count, words", [(0, "0 gateways"), (1, "1 gateway"), (2, "2 gateways")])
def test_plural_agrees_with_the_count(count, words):
    assert plural(count, "gateway") == words


def test_plural_takes_an_irregular_form():
    assert plural(3, "entry", "entries") == "3 entries"


def test_advance_of_one_event_says_event(run_dir, fake_gateway):
    fake = fake_gateway("nat-a", {"advance": {"clock_offset": 5.0, "now": 5.0, "events": 1}})
    make_lab("home-a", gateways=("nat-a",), socket=lambda gw: str(fake.path))
    assert invoke("advance", "nat-a", "5").output.strip() == "nat-a: clock +5 s (offset 5 s), 1 event"


# --- not root ----------------------------------------------------------------------

def test_a_root_only_state_file_is_not_privileged(run_dir, monkeypatch):
    make_lab("home-a")
    real = Path.read_text

    def denied(self, *args, **kw):
        if self.name == "state.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kw)

    monkeypatch.setattr(Path, "read_text", denied)
    result = invoke("status")
    assert isinstance(result.exception, NotPrivileged)
    assert result.exception.message.startswith("lab state is readable by root only")


def test_a_root_only_control_socket_is_not_privileged(tmp_path, monkeypatch):
    from natlab.gateway.client import GatewayClient

    def denied(self, address):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("socket.socket.connect", denied)
    with pytest.raises(NotPrivileged, match="control socket of gateway nat-a is root's only"):
        GatewayClient(tmp_path / "gw.sock", name="nat-a").status()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run natlab as another user")
def test_status_as_another_user_is_one_line_and_exit_1(run_dir):
    run_dir.chmod(0o755)
    make_lab("home-a")  # its directory is 0700, as up makes it
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if subprocess.run([*as_nobody, sys.executable, "-c", "import natlab"], capture_output=True).returncode:
        pytest.skip("user nobody cannot run this interpreter")
    for command in (["status"], ["mappings", "nat-a"]):
        done = subprocess.run([*as_nobody, sys.executable, "-m", "natlab", *command], capture_output=True,
                              text=True, env={**os.environ, "NATLAB_RUN_DIR": str(run_dir)})
        assert done.returncode == 1
        assert done.stderr.startswith("natlab: error: lab state is readable by root only")
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


# --- docker labs -------------------------------------------------------------------

def docker_lab(name: str = "dock") -> LabState:
    return make_lab(name, hosts=("alice",), backend="docker", image="natlab:latest",
                    containers={"alice": {"sandbox": f"natlab-{name}-alice",
                                          "app": f"natlab-{name}-alice.app"}})


def fake_docker(monkeypatch, inspect: str, logs: str = "") -> None:
    def run(*args, check=True, timeout=120):
        out = inspect if args[0] == "inspect" else logs
        return subprocess.CompletedProcess(["docker", *args], 0, out, "")

    monkeypatch.setattr(docker, "_docker", run)
    monkeypatch.setattr(docker.shutil, "which", lambda cmd: "/usr/bin/docker")


def test_exec_into_a_host_whose_app_exited_says_so_with_its_output(run_dir, monkeypatch):
    docker_lab()
    fake_docker(monkeypatch, "/natlab-dock-alice.app\texited\t2\tmy-app:1\n",
                logs="starting\nlistening on 3478\nfatal: cannot bind\n")
    result = invoke("exec", "alice", "--", "true")
    assert isinstance(result.exception, LabError)
    assert result.exception.message == (
        "the app of 'alice' exited with code 2, so nothing runs in it: "
        "got 'starting | listening on 3478 | fatal: cannot bind' "
        "(hint: natlab down dock and up again, or docker start natlab-dock-alice.app)")


def test_status_of_a_docker_lab_shows_each_hosts_image_and_app(run_dir, monkeypatch):
    docker_lab()
    fake_docker(monkeypatch, "/natlab-dock-alice.app\texited\t137\tmy-app:1\n")
    (lab,) = json.loads(invoke("status", "--json").output)
    assert lab["hosts"]["alice"]["image"] == "my-app:1"
    assert lab["hosts"]["alice"]["app"] == "exited (137)"
    table = invoke("status").output
    assert "my-app:1" in table and "exited (137)" in table


def test_up_with_bad_datapath_options_names_every_one_before_anything_is_made(run_dir, monkeypatch):
    from natlab.datapaths import registry
    from natlab.shipped import shipped_dir

    monkeypatch.delenv(registry.ENV, raising=False)
    topology = shipped_dir("topologies") / "two-homes.yaml"
    result = invoke("up", str(topology), "--datapath", "dpdk:workers=9:drvier=af_xdp")
    said = str(result.exception)  # natlab's main prints it as 'natlab: 2 errors: ...'
    assert result.exit_code != 0
    assert "dpdk.workers" in said and "dpdk.drvier" in said and "driver" in said
    assert list(run_dir.iterdir()) == []  # no lab was started
