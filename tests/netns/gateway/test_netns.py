"""The gateway process for real: namespaces, NFQUEUE, iptables, kernel UDP sockets."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from natlab.errors import ControlError

from .conftest import split

pytestmark = pytest.mark.netns

EIM_APDF = {"mapping": "endpoint-independent", "filtering": "address-and-port-dependent"}
APDM = {"mapping": "address-and-port-dependent", "filtering": "address-and-port-dependent"}


def _policy(data):
    from natlab.behaviours.presets import policy_from_dict, policy_to_dict

    return policy_to_dict(policy_from_dict(data))


def test_passthrough_gateway_routes_and_closes_on_sigterm(gwlab):
    subprocess.run(["ip", "-n", gwlab.outside, "route", "add", "192.168.77.0/24", "via", "203.0.113.1"], check=True)
    spec = gwlab.spec({})
    client = gwlab.start_gateway(spec, engine="passthrough")
    if gwlab.queue_rules:
        assert "NATLAB_PRE" in gwlab.iptables() and "natlab:gwtest" in gwlab.iptables()
    assert oct(spec.control_socket.stat().st_mode & 0o777) == "0o600"
    server = gwlab.serve_udp(gwlab.outside, 7000)
    replies = gwlab.send_udp(gwlab.inside, 5000, f"{gwlab.OUTSIDE_ADDRS[0]}:7000")
    seen = gwlab.received(server)
    assert [split(s["source"]) for s in seen] == [(gwlab.INSIDE_ADDR, 5000)]
    assert replies and split(replies[0]["source"])[0] == gwlab.OUTSIDE_ADDRS[0]
    counters = client.counters()["gateway"]
    assert counters["packets_inside"] >= 1 and counters["packets_outside"] >= 1
    assert gwlab.stop_gateway() == 0
    if gwlab.queue_rules:
        listing = gwlab.iptables()  # closed, not gone: DROP where the queues were, until the lab goes
        assert "NFQUEUE" not in listing and "-j DROP" in listing and "natlab:gwtest" in listing
    assert gwlab.forwarding() == "0"
    assert not spec.control_socket.exists()


def _two_destinations(gwlab, bind=5000):
    """Send from one inside socket to two outside ports; return (what outside saw, replies)."""
    server = gwlab.serve_udp(gwlab.outside, 7000, 7001)
    replies = gwlab.send_udp(gwlab.inside, bind, f"{gwlab.OUTSIDE_ADDRS[0]}:7000", f"{gwlab.OUTSIDE_ADDRS[0]}:7001")
    return gwlab.received(server), replies


@pytest.mark.parametrize(
    "policy, same_port",
    [(EIM_APDF, True), (APDM, False)],
    ids=["eim-keeps-the-external-port", "apdm-changes-it"],
)
def test_outbound_udp_is_translated_and_replies_return(gwlab, policy, same_port):
    client = gwlab.start_gateway(gwlab.spec(_policy(policy)))
    seen, replies = _two_destinations(gwlab)
    assert {split(s["source"])[0] for s in seen} == {gwlab.POOL}
    ports = [split(s["source"])[1] for s in seen]
    assert len(ports) == 2 and (ports[0] == ports[1]) is same_port
    assert sorted(split(r["source"])[1] for r in replies) == [7000, 7001]  # both replies reached the inside socket
    assert len(client.mappings()) == (1 if same_port else 2)


def test_unsolicited_inbound_is_filtered_and_advance_expires(gwlab):
    client = gwlab.start_gateway(gwlab.spec(_policy(EIM_APDF)))
    seen, _ = _two_destinations(gwlab)
    external_port = split(seen[0]["source"])[1]
    inside = gwlab.serve_udp(gwlab.inside, 5000, reply=False)
    # From a port the inside never talked to: address-and-port-dependent filtering drops it.
    gwlab.send_udp(gwlab.outside, 7002, f"{gwlab.POOL}:{external_port}", wait=0.3)
    assert gwlab.received(inside) == []
    events = client.events()
    assert any(e.get("reason") == "filtered" or e["kind"] == "filtered" for e in events)
    assert client.counters()["drops"]["filtered"] >= 1
    (mapping,) = client.mappings()
    assert mapping["external"] == f"{gwlab.POOL}:{external_port}"
    client.advance(400)  # past the UDP timer
    assert client.mappings() == []
    assert any(e["kind"] == "mapping-expired" for e in client.events())


def test_control_ops_on_a_live_gateway(gwlab):
    spec = gwlab.spec(_policy(EIM_APDF))
    client = gwlab.start_gateway(spec)
    status = client.status()
    assert status["pid"] == gwlab.gateway.pid and status["pool"] == [gwlab.POOL]
    assert status["engine"] == "Engine" and status["policy"]["mapping"] == "endpoint-independent"
    assert client.set(["timeouts.udp=150"])["timeouts"]["udp"] == 150
    with pytest.raises(ControlError):
        client.set(["timeouts.nonsense=1"])
    _two_destinations(gwlab)
    assert client.flush() and client.mappings() == []  # a reboot
    assert client.set_pool(["203.0.113.20"]) == ["203.0.113.20"]
    if gwlab.queue_rules:  # the kernel answers ARP for the pool; dpdk's router does (below)
        addresses = subprocess.run(["ip", "-n", gwlab.gw, "-4", "addr", "show", "out0"],
                                   capture_output=True, text=True, check=True).stdout
        assert "203.0.113.20/24" in addresses and f"{gwlab.POOL}/" not in addresses
        assert "203.0.113.20/32" in gwlab.iptables() and f"{gwlab.POOL}/32" not in gwlab.iptables()
    seen, _ = _two_destinations(gwlab, bind=5002)
    assert {split(s["source"])[0] for s in seen} == {"203.0.113.20"}


def test_kill_9_stops_traffic_and_namespace_deletion_removes_the_rest(gwlab):
    spec = gwlab.spec(_policy(EIM_APDF))
    gwlab.start_gateway(spec)
    assert gwlab.stop_gateway(signal.SIGKILL) == -signal.SIGKILL
    server = gwlab.serve_udp(gwlab.outside, 7000)
    gwlab.send_udp(gwlab.inside, 5000, f"{gwlab.OUTSIDE_ADDRS[0]}:7000", wait=0.3)
    assert gwlab.received(server) == []  # a dead NAT passes nothing (no --queue-bypass)
    with pytest.raises(ControlError, match="not running"):
        from natlab.gateway.client import GatewayClient

        GatewayClient(spec.control_socket, name="nat-a").status()
    gwlab.teardown()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert gwlab.prefix not in listed


def test_hairpin_goes_back_inside_with_the_external_source(gwlab):
    eim_eif = {"mapping": "endpoint-independent", "filtering": "endpoint-independent",
               "hairpinning": "external-source"}
    client = gwlab.start_gateway(gwlab.spec(_policy(eim_eif)))
    outside = gwlab.serve_udp(gwlab.outside, 7000)
    gwlab.send_udp(gwlab.inside, 5000, f"{gwlab.OUTSIDE_ADDRS[0]}:7000")  # maps 5000
    (first,) = gwlab.received(outside)
    mapped = first["source"]  # inside 5000's external endpoint
    target = gwlab.serve_udp(gwlab.inside, 5000)
    replies = gwlab.send_udp(gwlab.inside, 5001, mapped)
    (seen,) = gwlab.received(target)
    assert split(seen["source"])[0] == gwlab.POOL  # REQ-9b: the sender's external endpoint
    assert replies and replies[0]["source"] == mapped  # and back again
    assert client.counters()["gateway"]["hairpins_sent"] >= 2


def test_unsolicited_syn_gets_a_rst_through_the_raw_socket(gwlab):
    client = gwlab.start_gateway(gwlab.spec(_policy({"tcp": {"unsolicited_syn": "rst", "syn_hold": 6}})))
    connect = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(20)\n"
        "try:\n s.connect((sys.argv[1], 4444)); print('connected')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except OSError as e: print('error', e)\n"
    )
    proc = subprocess.Popen(["ip", "netns", "exec", gwlab.outside, "python3", "-c", connect, gwlab.POOL],
                            stdout=subprocess.PIPE, text=True)
    gwlab.procs.append(proc)
    deadline = time.monotonic() + 5
    while client.counters()["drops"].get("unsolicited-syn", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    client.advance(7)  # past syn_hold: the held SYN is answered now
    out, _ = proc.communicate(timeout=15)
    assert out.strip() == "refused"
    assert client.counters()["gateway"]["emitted"] >= 1


def test_control_socket_answers_during_a_flood(gwlab):
    client = gwlab.start_gateway(gwlab.spec(_policy(EIM_APDF)))
    flood = (
        "import socket,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "end=time.monotonic()+3\n"
        "while time.monotonic()<end:\n"
        " try: s.sendto(b'x'*64,('203.0.113.2',9))\n"
        " except OSError: pass\n"
    )
    proc = subprocess.Popen(["ip", "netns", "exec", gwlab.inside, "python3", "-c", flood])
    gwlab.procs.append(proc)
    time.sleep(0.5)
    slowest = 0.0
    while proc.poll() is None:
        started = time.monotonic()
        assert client.ping()
        client.advance(0)
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.1)
    assert slowest < 1.0
    assert client.counters()["translated_out"] > 1000
