"""The memory Driver's GRE probes and held TCP connections, as the netns probes behave."""

from __future__ import annotations

from pathlib import Path

from natlab.realisers.base import Probe
from natlab.realisers.memory.driver import MemoryDriver

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
SERVER = "203.0.113.100"
BOB, BOB_STATIC = "192.168.1.20", "203.0.113.50"


def static_bob() -> MemoryDriver:
    d = MemoryDriver(TOPOLOGIES / "hairpin.yaml")
    d.set("nat", [f'static=[{{"internal": "{BOB}", "external": "{BOB_STATIC}"}}]'])
    return d


def test_gre_from_a_static_host_is_seen_from_its_static_address_and_answered():
    got = static_bob().probe(Probe("gre", "bob", SERVER, receiver="server", reply=True))
    assert (got.delivered, got.seen, got.replied, got.reply_from, got.detail) == (
        True, BOB_STATIC, True, SERVER, "")


def test_gre_nobody_takes_is_refused_with_a_protocol_unreachable_translated_back():
    got = static_bob().probe(Probe("gre", "bob", SERVER, reply=True))
    assert (got.delivered, got.detail) == (False, "refused")


def test_gre_from_a_host_without_a_static_address_is_dropped_as_unsupported():
    got = static_bob().probe(Probe("gre", "alice", SERVER, receiver="server"))
    assert (got.delivered, got.detail) == (False, "unsupported-protocol")


def test_keep_open_leaves_the_tcp_session_established():
    d = MemoryDriver(TOPOLOGIES / "two-homes.yaml")
    got = d.probe(Probe("tcp", "alice", SERVER, 8080, sport=40000, receiver="server", reply=True, keep_open=True))
    assert got.delivered and got.replied
    [row] = d.mappings("nat-a")
    assert [s["state"] for s in row["sessions"]] == ["established"]


def test_a_closed_tcp_probe_leaves_the_session_closing():
    d = MemoryDriver(TOPOLOGIES / "two-homes.yaml")
    d.probe(Probe("tcp", "alice", SERVER, 8080, sport=40000, receiver="server", reply=True))
    [row] = d.mappings("nat-a")
    assert [s["state"] for s in row["sessions"]] == ["closing"]


def test_a_connect_nobody_answered_leaves_no_half_open_socket_behind():
    d = MemoryDriver(TOPOLOGIES / "two-homes.yaml")
    nat_b = d.addresses("nat-b")[0]
    d.probe(Probe("tcp", "alice", nat_b, 41000, sport=40000, receiver="bob", listen_port=41000))  # dropped
    assert d.net.stack("alice").conns == {}
