"""The traversal matrix on a real lab: kernel sockets, gateway processes, the built-in peer."""

from __future__ import annotations

import json
import os
import random
import time

import pytest
from typer.testing import CliRunner

from natlab.matrix.memory import CLASSIC, EXPECTED_CLASSIC
from natlab.matrix.lab import UserApp, run_lab_matrix


@pytest.mark.netns
@pytest.mark.usefixtures("needs_daemon")
def test_the_classic_matrix_on_netns_agrees_with_rfc_4787(lab_name) -> None:
    start = time.monotonic()
    run = run_lab_matrix(CLASSIC, seed=0, lab_name=lab_name)
    assert run.results == EXPECTED_CLASSIC
    assert time.monotonic() - start < 60
    for (a, b), pair in run.pairs.items():
        report = pair.alice.report
        assert report is not None and report["event"] == ("punched" if pair.ok else "failed"), (a, b)
        assert report["reflexive"] == "203.0.113.1:" + report["reflexive"].rsplit(":", 1)[1]
        assert pair.bob.report["name"] == "bob"
    # the cones keep the port (preserve), so alice's reflexive endpoint is the public :40000
    assert run.pairs[("full-cone", "full-cone")].alice.report["reflexive"] == "203.0.113.1:40000"
    assert '"registered"' in run.server_output


@pytest.mark.netns
@pytest.mark.usefixtures("needs_daemon")
def test_a_user_app_plugs_in_with_its_own_server_and_a_success_regex(lab_name) -> None:
    app = UserApp(
        side_a="{python} -m natlab.hostprogs.peer punch --server {server} --session {session} --name {self} "
               "--sport {sport} --timeout 2",
        side_b="{python} -m natlab.hostprogs.peer punch --server {server_addr}:{server_port} --session {session} "
               "--name {self} --timeout 2",
        server="{python} -m natlab.hostprogs.peer rendezvous --port {server_port}",
        success=r'"event": "punched".*"peer": "(alice|bob)"',
    )
    run = run_lab_matrix(("full-cone", "symmetric"), seed=1, app=app, lab_name=lab_name)
    assert run.results == {(a, b): EXPECTED_CLASSIC[(a, b)] for a, b in run.results}
    assert set(run.results) == {("full-cone", "full-cone"), ("full-cone", "symmetric"),
                                ("symmetric", "full-cone"), ("symmetric", "symmetric")}
    sides = run.pairs[("full-cone", "symmetric")]
    assert "--name" in sides.alice.argv and "alice" in sides.alice.argv
    assert sides.bob.report["peer"] == "alice"


@pytest.mark.netns
@pytest.mark.usefixtures("needs_daemon")
def test_a_success_regex_that_never_matches_fails_every_pair(lab_name) -> None:
    app = UserApp(side_a="true", side_b="true", success="never printed")
    run = run_lab_matrix(("full-cone",), app=app, lab_name=lab_name)
    assert run.results == {("full-cone", "full-cone"): False}
    assert run.pairs[("full-cone", "full-cone")].alice.returncode == 0


@pytest.mark.netns
@pytest.mark.usefixtures("needs_daemon")
def test_the_cli_runs_the_netns_backend(tmp_path) -> None:
    from natlab.cli import app
    from natlab.realisers.netns import build as runner
    out = tmp_path / "m.json"
    try:
        result = CliRunner().invoke(app, ["matrix", "--backend", "netns", "--behaviours", "full-cone",
                                          "--json", str(out), "--svg", str(tmp_path / "m.svg")])
    finally:
        runner.down(f"matrix-{os.getpid()}")  # the CLI's lab, should a failure have left it
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["backend"] == "netns"
    [row] = data["results"]
    assert row["ok"] and row["detail"]["sides"]["alice"]["report"]["event"] == "punched"
    assert (tmp_path / "m.svg").read_text().startswith("<svg")


def test_configure_replaces_the_policy_with_a_preset_and_flushes_mappings() -> None:
    from natlab import Engine
    from natlab.engine.types import Side
    from natlab.gateway.service import Gateway
    from natlab.gateway.spec import GatewaySpec
    from natlab.packet import build
    from natlab.behaviours.presets import resolve

    class Sent:
        def send(self, packet):
            pass

    spec = GatewaySpec(lab="t", name="nat-a", netns="natlab-t-nat-a", inside_ifaces=("in0",), outside_iface="out0",
                       inside_subnets=("192.168.1.0/24",), outside_subnet="203.0.113.0/24",
                       pool=("203.0.113.1",), preset="full-cone", policy={}, seed=1, run_dir="/tmp")
    policy = resolve("full-cone").policy
    gateway = Gateway(spec, Engine(policy, ["203.0.113.1"], random.Random(1)), policy, sender=Sent())
    gateway.on_packet(build.udp("192.168.1.2", 5000, "203.0.113.100", 3478), Side.INSIDE)
    assert len(gateway.handle({"op": "mappings"})["mappings"]) == 1
    answer = gateway.handle({"op": "configure", "behaviour": "symmetric", "overrides": {"timeouts": {"udp": 30}}})
    assert answer["ok"] and answer["policy"]["mapping"] == "address-and-port-dependent"
    assert answer["policy"]["timeouts"]["udp"] == 30
    assert gateway.handle({"op": "mappings"})["mappings"] == []
    assert gateway.handle({"op": "status"})["preset"] == "symmetric"
    assert gateway.events[-1]["kind"] == "reconfigured"
    refused = gateway.handle({"op": "configure", "behaviour": "nope"})
    assert not refused["ok"] and "known presets" in refused["error"]
    assert gateway.handle({"op": "status"})["preset"] == "symmetric"


@pytest.mark.netns
@pytest.mark.usefixtures("needs_daemon")
@pytest.mark.datapaths("nfqueue", "kernel-cache")  # dpdk: port mapping servers not reachable yet
@pytest.mark.parametrize("protocol", ["natpmp", "pcp", "upnp"])
def test_with_port_mapping_symmetric_against_symmetric_punches_on_netns(lab_name, protocol) -> None:
    """Each side's own port mapping client maps 40000 in its namespace before the punch and the
    built-in peer offers the mapped endpoint: the pair RFC 4787 says fails gets through."""
    from natlab.matrix.memory import EXPECTED_MAPPED

    pairs = ("symmetric", "port-restricted-cone")
    run = run_lab_matrix(pairs, seed=2, lab_name=lab_name, port_mapping=protocol)
    assert run.results == {key: EXPECTED_MAPPED[key] for key in run.results}
    assert all(run.results.values())
    argv = run.pairs[("symmetric", "symmetric")].alice.argv
    assert argv[argv.index("--candidate") + 1].startswith("203.0.113.1:")
