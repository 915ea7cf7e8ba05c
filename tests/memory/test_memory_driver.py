"""The memory Driver over the shipped topologies: probes and gateway operations, named by behaviour."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from natlab.gateway.service import Gateway
from natlab.realisers.base import Probe, Unsupported
from natlab.realisers.memory.driver import MemoryDriver

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
SERVER, SERVER_2 = "203.0.113.100", "203.0.113.101"


def lab(name: str, seed: int | None = None) -> MemoryDriver:
    return MemoryDriver(TOPOLOGIES / f"{name}.yaml", seed)


def udp(src: str, dst: str, dport: int, **kw) -> Probe:
    return Probe("udp", src, dst, dport, **kw)


def external_of(driver: MemoryDriver, gateway: str, internal: str) -> tuple[str, int]:
    [row] = [r for r in driver.mappings(gateway) if r["internal"] == internal]
    addr, port = row["external"].rsplit(":", 1)
    return addr, int(port)


def d_pool(driver: MemoryDriver, gateway: str) -> str:
    return driver.addresses(gateway)[0]


# -- probes ------------------------------------------------------------------------

def test_udp_probe_through_nat_is_seen_from_the_mapping_and_answered():
    d = lab("two-homes")
    got = d.probe(udp("alice", SERVER, 3478, sport=40000, receiver="server", reply=True))
    assert (got.delivered, got.replied, got.detail) == (True, True, "")
    assert got.seen == "{}:{}".format(*external_of(d, "nat-a", "192.168.1.2:40000"))
    assert got.reply_from == f"{SERVER}:3478" and got.sport == 40000
    assert [e["kind"] for e in got.events] == ["mapping-created"]


def test_udp_probe_to_closed_port_gets_port_unreachable():
    got = lab("two-homes").probe(udp("alice", SERVER, 9))
    assert (got.delivered, got.detail) == (False, "refused")


def test_apdf_drops_unsolicited_from_other_port():
    d = lab("two-homes")  # nat-a is port-restricted cone
    d.probe(udp("alice", SERVER, 3478, sport=40000, receiver="server"))
    addr, port = external_of(d, "nat-a", "192.168.1.2:40000")
    got = d.probe(udp("server", addr, port, sport=9999, receiver="alice", listen_port=40000))
    assert (got.delivered, got.detail) == (False, "filtered")
    assert d.events("nat-a", 1)[0]["kind"] == "filtered"
    same_port = d.probe(udp("server", addr, port, sport=3478, receiver="alice", listen_port=40000))
    assert same_port.delivered and same_port.seen == f"{SERVER}:3478"


def test_eif_admits_unsolicited_from_anywhere():
    d = lab("hairpin")  # full cone
    d.probe(udp("alice", SERVER, 3478, sport=40000, receiver="server"))
    addr, port = external_of(d, "nat", "192.168.1.10:40000")
    assert d.probe(udp("server", addr, port, sport=9999, receiver="alice", listen_port=40000)).delivered


def test_inbound_without_mapping_is_dropped_for_no_mapping():
    d = lab("one-home")
    got = d.probe(udp("server", d_pool(d, "nat"), 5000, receiver="alice"))
    assert (got.delivered, got.detail) == (False, "no-mapping")


def test_symmetric_nat_maps_each_destination_to_a_new_port_on_one_paired_address():
    d = lab("two-homes")
    a = d.probe(udp("bob", SERVER, 3478, sport=40000, receiver="server"))
    b = d.probe(udp("bob", SERVER_2, 3478, sport=40000, receiver="server"))
    assert a.delivered and b.delivered
    assert a.seen_port != b.seen_port
    assert a.seen_address == b.seen_address  # pooling: paired


def test_double_nat_is_seen_from_the_cgn_pool():
    d = lab("double-nat")
    got = d.probe(udp("alice", SERVER, 3478, receiver="server", reply=True))
    assert got.delivered and got.replied and got.seen_address == "203.0.113.10"
    assert len(d.mappings("home-router")) == len(d.mappings("cgn")) == 1


def test_hairpin_with_external_source_shows_the_nat_address():
    d = lab("hairpin")
    d.probe(udp("bob", SERVER, 3478, sport=5000, receiver="server"))
    addr, port = external_of(d, "nat", "192.168.1.20:5000")
    got = d.probe(udp("alice", addr, port, sport=6000, receiver="bob", listen_port=5000, reply=True))
    assert got.delivered and got.replied
    assert got.seen_address == addr


def test_tcp_probe_is_accepted_and_answered():
    d = lab("two-homes")
    got = d.probe(Probe("tcp", "alice", SERVER, 80, receiver="server", reply=True))
    assert (got.delivered, got.replied, got.detail) == (True, True, "")
    [row] = d.mappings("nat-a")
    assert row["protocol"] == "tcp" and got.seen == row["external"]


def test_tcp_probe_to_closed_port_is_refused_by_a_rst():
    got = lab("two-homes").probe(Probe("tcp", "alice", SERVER, 81))
    assert (got.delivered, got.detail) == (False, "refused")


def test_icmp_echo_is_seen_from_the_nat_and_answered():
    d = lab("two-homes")
    got = d.probe(Probe("icmp", "alice", SERVER_2, receiver="server", reply=True, sport=77))
    assert (got.delivered, got.replied, got.sport) == (True, True, 77)
    assert got.seen == d_pool(d, "nat-a") and got.reply_from == SERVER_2


def test_same_seed_same_ports_other_seed_other_ports():
    def seen(seed):
        return lab("two-homes", seed).probe(udp("bob", SERVER, 3478, sport=40000, receiver="server")).seen
    assert seen(5) == seen(5)
    assert len({seen(s) for s in range(4)}) > 1


# -- gateways ------------------------------------------------------------------------

def test_mapping_rows_are_shaped_like_the_control_socket():
    d = lab("two-homes")
    d.probe(udp("alice", SERVER, 3478, sport=40000, receiver="server", reply=True))
    d.advance("nat-a", 10)
    nat = d.net.nat("nat-a")
    service = Gateway(SimpleNamespace(name="nat-a", pool=d.addresses("nat-a"), preset="port-restricted-cone"),
                      nat.engine, nat.engine.policy, sender=None, clock=lambda: d.net.now_of("nat-a"))
    assert d.mappings("nat-a") == json.loads(json.dumps(service.handle({"op": "mappings"})["mappings"]))
    assert d.mappings("nat-a")[0]["expires_in"] == 290.0


def test_advance_one_gateway_expires_only_its_mappings():
    d = lab("two-homes")
    d.probe(udp("alice", SERVER, 3478, receiver="server"))
    d.probe(udp("bob", SERVER, 3478, receiver="server"))
    d.advance("nat-a", 301)
    assert d.mappings("nat-a") == [] and len(d.mappings("nat-b")) == 1
    assert d.events("nat-a", 1)[0]["kind"] == "mapping-expired"


def test_sleep_moves_every_gateway_clock():
    d = lab("two-homes")
    d.probe(udp("alice", SERVER, 3478, receiver="server"))
    d.probe(udp("bob", SERVER, 3478, receiver="server"))
    d.sleep(301)
    assert d.mappings("nat-a") == d.mappings("nat-b") == []


def test_reboot_flushes_mappings():
    d = lab("one-home")
    d.probe(udp("alice", SERVER, 3478, receiver="server"))
    d.reboot("nat")
    assert d.mappings("nat") == []
    assert d.events("nat", 1)[0]["kind"] == "mappings-flushed"


def test_set_changes_knobs_live():
    d = lab("two-homes")
    d.set("nat-a", ["timeouts.udp=30", "filtering=endpoint-independent"])
    d.probe(udp("alice", SERVER, 3478, sport=40000, receiver="server"))
    [row] = d.mappings("nat-a")
    assert row["expires_in"] == 30
    addr, port = external_of(d, "nat-a", "192.168.1.2:40000")
    assert d.probe(udp("server", addr, port, sport=9999, receiver="alice", listen_port=40000)).delivered
    assert d.events("nat-a")[0] == {"kind": "reconfigured", "detail": "timeouts.udp=30 filtering=endpoint-independent",
                                    "seq": 1, "at": 0.0, "gateway": "nat-a"}


def test_configure_replaces_the_preset_and_flushes():
    d = lab("two-homes")
    d.probe(udp("bob", SERVER, 3478, sport=40000, receiver="server"))
    d.configure("nat-b", "full-cone", {"timeouts": {"udp": 60}})
    assert d.mappings("nat-b") == []
    a = d.probe(udp("bob", SERVER, 3478, sport=40000, receiver="server"))
    b = d.probe(udp("bob", SERVER_2, 3478, sport=40000, receiver="server"))
    assert a.seen == b.seen  # endpoint-independent mapping now
    assert d.mappings("nat-b")[0]["expires_in"] == 60


def test_set_pool_moves_mappings_and_routing_to_the_new_address():
    d = lab("two-homes")
    d.probe(udp("bob", SERVER, 3478, sport=40000, receiver="server"))
    d.set_pool("nat-b", ["203.0.113.50"])
    assert d.addresses("nat-b") == ["203.0.113.50"] and d.mappings("nat-b") == []
    got = d.probe(udp("bob", SERVER, 3478, sport=40000, receiver="server", reply=True))
    assert got.seen_address == "203.0.113.50" and got.replied


def test_counters_report_engine_and_gateway_numbers():
    d = lab("two-homes")
    d.probe(udp("alice", SERVER, 3478, receiver="server", reply=True))
    c = d.counters("nat-a")
    assert (c["mappings_created"], c["translated_out"], c["translated_in"]) == (1, 1, 1)
    assert c["gateway"]["packets_inside"] == 1 and c["gateway"]["packets_outside"] == 1


def test_programs_are_unsupported_in_memory():
    d = lab("one-home")
    with pytest.raises(Unsupported, match="cannot run programs.*netns backend"):
        d.run("alice", ["true"], 1)
    with pytest.raises(Unsupported):
        d.spawn("alice", ["true"], "x")
    assert d.stop_spawned() == {}


def test_unknown_names_are_configuration_errors():
    from natlab.errors import ConfigError

    d = lab("one-home")
    with pytest.raises(ConfigError, match="no gateway 'nope'"):
        d.mappings("nope")
    with pytest.raises(ConfigError, match="no host 'nope'"):
        d.probe(udp("nope", SERVER, 1))


def test_networks_joined_by_routers_are_one_internet():
    d = MemoryDriver({
        "name": "routed",
        "networks": {"isp": {"subnet": "203.0.113.0/24"}, "core": {"subnet": "198.51.100.0/24"},
                     "home": {"subnet": "192.168.1.0/24"}},
        "gateways": {"nat": {"behaviour": "full-cone", "inside": "home", "outside": "isp"}},
        "routers": {"r1": {"networks": ["isp", "core"]}},
        "hosts": {"alice": {"network": "home"}, "far": {"network": "core", "address": "198.51.100.50"}},
    })
    got = d.probe(udp("alice", "198.51.100.50", 3478, receiver="far", reply=True))
    assert got.delivered and got.replied and got.seen_address == d.addresses("nat")[0]


def test_port_forward_set_live_admits_inbound_to_the_inside_host():
    d = lab("one-home")
    d.set("nat", ["forwards=[{protocol: udp, external_port: 5000, internal_address: 192.168.1.2, internal_port: 5000}]"])
    got = d.probe(udp("server", d_pool(d, "nat"), 5000, receiver="alice", listen_port=5000, reply=True))
    assert got.delivered and got.replied and got.seen == "203.0.113.100:{}".format(got.sport)
