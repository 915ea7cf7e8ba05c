"""The gateway commands against a live gateway found through a lab state file."""

from __future__ import annotations

import json
import subprocess

import pytest
from typer.testing import CliRunner

from natlab.cli.app import app
import natlab.cli  # noqa: F401  (registers the commands)
from natlab.errors import ControlError
from natlab.datapaths.nfqueue.capture import Capture

pytestmark = pytest.mark.netns
EIM_APDF = {"mapping": "endpoint-independent", "filtering": "address-and-port-dependent"}


@pytest.fixture
def live(gwlab, tmp_path, monkeypatch):
    """A running gateway registered in a lab state under NATLAB_RUN_DIR, with one mapping."""
    from natlab.realisers.netns.state import LabState
    from natlab.behaviours.presets import policy_from_dict, policy_to_dict

    monkeypatch.setenv("NATLAB_RUN_DIR", str(tmp_path / "run"))
    spec = gwlab.spec(policy_to_dict(policy_from_dict(EIM_APDF)))
    gwlab.start_gateway(spec)
    state = LabState.new("gwtest")
    state.gateways["nat-a"] = {"netns": gwlab.gw, "control_socket": str(spec.control_socket)}
    state.save()
    server = gwlab.serve_udp(gwlab.outside, 7000)
    gwlab.send_udp(gwlab.inside, 5000, f"{gwlab.OUTSIDE_ADDRS[0]}:7000")
    gwlab.received(server)
    return gwlab


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=True, env={"COLUMNS": "200"})


def test_mappings_json_and_table(live):
    result = run("mappings", "nat-a", "--json")
    assert result.exit_code == 0, result.output
    (mapping,) = json.loads(result.output)
    assert mapping["internal"] == f"{live.INSIDE_ADDR}:5000"
    assert mapping["external"].startswith(live.POOL)
    table = run("mappings", "nat-a")
    assert table.exit_code == 0 and live.POOL in table.output and "expires in" in table.output


def test_set_advance_flush_counters_events(live):
    result = run("set", "nat-a", "timeouts.udp=200")
    assert result.exit_code == 0 and "timeouts.udp = 200" in result.output
    assert "translated_out" in run("counters", "nat-a").output
    assert run("advance", "nat-a", "500").exit_code == 0
    assert json.loads(run("mappings", "nat-a", "--json").output) == []
    assert run("flush", "nat-a").exit_code == 0
    lines = [json.loads(line) for line in run("events", "nat-a").output.splitlines()]
    kinds = {e["kind"] for e in lines}
    assert {"mapping-created", "mapping-expired", "reconfigured"} <= kinds


def test_unknown_gateway_is_a_clear_error(live):
    result = run("mappings", "nat-z")
    assert isinstance(result.exception, ControlError)
    assert "no gateway named 'nat-z'" in str(result.exception) and "nat-a" in str(result.exception)


def test_dead_gateway_is_a_clear_error(live):
    live.stop_gateway()
    result = run("counters", "nat-a")
    assert isinstance(result.exception, ControlError)
    assert "gateway nat-a is not running" in str(result.exception)


@pytest.mark.datapaths("nfqueue", "kernel-cache")  # the capture helper of the kernel-facing datapaths
def test_capture_shows_both_sides(live, tmp_path):
    pcap = tmp_path / "both.pcap"
    with Capture(live.gw, pcap) as cap:
        server = live.serve_udp(live.outside, 7000)
        live.send_udp(live.inside, 5001, f"{live.OUTSIDE_ADDRS[0]}:7000")
        live.received(server)
    assert cap.packets and cap.packets >= 4
    shown = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "ip.src", "-e", "udp.srcport"],
                           capture_output=True, text=True, check=True).stdout
    sources = {tuple(line.split("\t")) for line in shown.splitlines()}
    assert (live.INSIDE_ADDR, "5001") in sources  # before translation, inside
    assert any(src == live.POOL for src, _ in sources)  # after translation, outside


def test_capture_command_writes_a_pcap(live, tmp_path):
    pcap = tmp_path / "cli.pcap"
    result = run("capture", "nat-a", "-o", str(pcap), "--duration", "0.5")
    assert result.exit_code == 0, result.output
    assert pcap.exists() and pcap.stat().st_size >= 24  # at least a pcap header
