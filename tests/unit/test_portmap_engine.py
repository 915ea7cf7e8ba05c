"""The engine's explicit port mappings (kinds natpmp/pcp/upnp), driven with a manual clock."""

import random
from ipaddress import IPv4Network

import pytest

from natlab.engine import Drop, Engine, EventKind, Forward, Policy, Side
from natlab.engine.policy import Dependency, PortForward, Protocol
from natlab.engine.port_mapping_policy import RemotePeer
from natlab.engine.types import Endpoint
from natlab.packet import build
from natlab.packet.verify import problems

UDP, TCP = 17, 6
POOL = "203.0.113.1"
ALICE = Endpoint.of("192.168.1.2", 5000)
PEER = "198.51.100.9"


def engine(**knobs) -> Engine:
    policy = Policy(filtering=Dependency.ADDRESS_AND_PORT_DEPENDENT).replace(**knobs)
    return Engine(policy, [POOL], random.Random(7))


def inbound(e: Engine, src: str, sport: int, port: int, now: float, proto: int = UDP):
    packet = build.udp(src, sport, POOL, port, b"hi") if proto == UDP else \
        build.tcp(src, sport, POOL, port, flags=0x02)
    return e.process(packet, Side.OUTSIDE, now)


def outbound(e: Engine, sport: int, dst: str, dport: int, now: float):
    return e.process(build.udp(ALICE.ip, sport, dst, dport, b"hi"), Side.INSIDE, now)


def kinds(tick) -> list[str]:
    return [ev.kind.value for ev in tick.events]


def test_a_pcp_mapping_admits_every_remote_under_port_dependent_filtering():
    e = engine()
    assert kinds(e.map_port("pcp", UDP, ALICE, 6000, 100.0, (), 0.0)) == ["port-mapping-created"]
    for n, peer in enumerate(("198.51.100.9", "192.0.2.77")):
        verdict = inbound(e, peer, 4000 + n, 6000, 1.0)
        assert type(verdict) is Forward
        assert verdict.data[16:20] == ALICE.ip.packed and int.from_bytes(verdict.data[22:24], "big") == 5000
        assert problems(bytes(verdict.data)) == []


def test_a_filter_admits_only_the_remote_peers_it_names():
    e = engine()
    peers = (RemotePeer(IPv4Network("198.51.100.0/24"), 7000),)
    e.map_port("pcp", UDP, ALICE, 6000, 100.0, peers, 0.0)
    assert type(inbound(e, PEER, 7000, 6000, 1.0)) is Forward
    wrong_port, wrong_net = inbound(e, PEER, 7001, 6000, 1.0), inbound(e, "192.0.2.1", 7000, 6000, 1.0)
    assert type(wrong_port) is Drop and wrong_port.reason.value == "filtered"
    assert type(wrong_net) is Drop and wrong_net.reason.value == "filtered"


def test_the_mappings_table_shows_the_kind_the_lifetime_and_the_filters():
    e = engine()
    e.map_port("upnp", TCP, ALICE, 8080, None, (), 0.0, "web")
    e.map_port("natpmp", UDP, ALICE, 6000, 60.0, (RemotePeer(IPv4Network("192.0.2.5/32")),), 0.0)
    rows = {v.kind: v for v in e.mappings(1.0)}
    assert rows["upnp"].external == f"{POOL}:8080" and rows["upnp"].expires is None
    assert rows["natpmp"].expires == 60.0 and rows["natpmp"].remote == "192.0.2.5"
    assert rows["upnp"].internal == str(ALICE)


def test_new_outbound_flows_of_the_internal_endpoint_leave_from_the_mapped_port():
    e = engine()
    e.map_port("natpmp", UDP, ALICE, 6000, 100.0, (), 0.0)
    verdict = outbound(e, 5000, PEER, 53, 1.0)
    assert verdict.data[12:16] == bytes([203, 0, 113, 1]) and int.from_bytes(verdict.data[20:22], "big") == 6000
    assert problems(bytes(verdict.data)) == []
    other = outbound(e, 5001, PEER, 53, 1.0)  # another internal port: a dynamic mapping of its own
    assert int.from_bytes(other.data[20:22], "big") != 6000


def test_the_mapping_ends_when_its_lifetime_runs_out_and_not_before():
    e = engine()
    e.map_port("pcp", UDP, ALICE, 6000, 100.0, (), 0.0)
    assert inbound(e, PEER, 1, 6000, 99.0).__class__ is Forward  # traffic does not end it, nor extend it
    assert e.expire(99.5).events == ()
    tick = e.expire(100.0)
    assert kinds(tick) == ["port-mapping-expired"] and e.mappings(100.0) == ()
    assert type(inbound(e, PEER, 1, 6000, 101.0)) is Drop
    assert e.port_mapping_counters()["expired"] == 1


def test_a_refresh_moves_the_deadline_later_and_earlier():
    e = engine()
    e.map_port("pcp", UDP, ALICE, 6000, 100.0, (), 0.0)
    assert kinds(e.map_port("pcp", UDP, ALICE, 6000, 300.0, (), 50.0)) == ["port-mapping-refreshed"]
    assert e.expire(200.0).events == ()
    e.map_port("pcp", UDP, ALICE, 6000, 250.0, (), 210.0)
    assert kinds(e.expire(250.0)) == ["port-mapping-expired"]


def test_a_permanent_lease_never_expires():
    e = engine()
    e.map_port("upnp", UDP, ALICE, 6000, None, (), 0.0)
    e.expire(1e9)
    assert [v.kind for v in e.mappings(1e9)] == ["upnp"]


def test_a_delete_removes_the_mapping_and_its_sessions():
    e = engine()
    e.map_port("upnp", UDP, ALICE, 6000, None, (), 0.0)
    inbound(e, PEER, 1, 6000, 1.0)
    assert kinds(e.unmap_port(UDP, 6000, 2.0)) == ["port-mapping-deleted"]
    assert e.mappings(2.0) == () and e.table_sizes()["sessions"] == 0
    assert e.unmap_port(UDP, 6000, 3.0).events == ()
    assert type(inbound(e, PEER, 1, 6000, 4.0)) is Drop


def test_a_reboot_flushes_explicit_mappings_too():
    e = engine()
    e.map_port("pcp", UDP, ALICE, 6000, 100.0, (), 0.0)
    e.map_port("upnp", TCP, ALICE, 8080, None, (), 0.0)
    tick = e.flush(1.0)
    assert "2 port mappings" in " ".join(ev.detail for ev in tick.events)
    assert e.mappings(1.0) == () and e.port_mapping_counters()["flushed"] == 2
    assert e.expire(200.0).events == ()  # the old lifetime timer is stale


def test_losing_the_external_address_ends_explicit_mappings():
    e = engine()
    e.map_port("pcp", UDP, ALICE, 6000, 100.0, (), 0.0)
    tick = e.set_pool(["203.0.113.2"], 1.0)
    assert "port-mapping-deleted" in kinds(tick) and e.mappings(1.0) == ()


def test_is_free_is_false_for_ports_any_mapping_or_forward_holds():
    e = engine(forwards=(PortForward(Protocol.TCP, 8443, "192.168.1.3", 443),))
    outbound(e, 5000, PEER, 53, 0.0)
    dynamic = e.mappings(0.0)[1] if e.mappings(0.0)[0].kind == "forward" else e.mappings(0.0)[0]
    assert not e.port_free(UDP, dynamic.external_port)
    assert not e.port_free(TCP, 8443) and e.port_free(UDP, 8443)
    e.map_port("upnp", UDP, Endpoint.of("192.168.1.4", 1), 7777, None, (), 0.0)
    assert not e.port_free(UDP, 7777) and e.port_free(TCP, 7777)
    assert not e.port_free(UDP, 0) and not e.port_free(UDP, 65536)


def test_is_free_is_false_inside_a_port_block_a_subscriber_holds():
    e = engine(port_block=512)
    verdict = outbound(e, 5000, PEER, 53, 0.0)
    port = int.from_bytes(verdict.data[20:22], "big")
    first = 1024 + (port - 1024) // 512 * 512
    assert not e.port_free(UDP, first + (port - first + 1) % 512)
    outside = 1024 + ((port - 1024) // 512 + 1) % 126 * 512
    assert e.port_free(UDP, outside)


def test_mapping_the_port_of_its_own_dynamic_mapping_makes_it_explicit():
    e = engine()
    first = outbound(e, 5000, PEER, 53, 0.0)
    port = int.from_bytes(first.data[20:22], "big")
    tick = e.map_port("pcp", UDP, ALICE, port, 100.0, (), 1.0)
    assert "became explicit" in tick.events[0].detail
    rows = e.mappings(1.0)
    assert [r.kind for r in rows] == ["pcp"] and rows[0].sessions[0].remote == f"{PEER}:53"
    answer = inbound(e, PEER, 53, port, 2.0)
    assert type(answer) is Forward
    assert e.port_mapping_counters()["conflicts.adopted-dynamic"] == 1
    assert e.counters.mappings_active == 0


def test_a_port_another_hosts_dynamic_mapping_holds_is_refused_and_counted():
    e = engine()
    first = outbound(e, 5000, PEER, 53, 0.0)
    port = int.from_bytes(first.data[20:22], "big")
    bob = Endpoint.of("192.168.1.3", 5000)
    tick = e.map_port("natpmp", UDP, bob, port, 100.0, (), 1.0)
    assert kinds(tick) == ["port-mapping-refused"]
    assert e.port_mapping_counters()["conflicts.refused-dynamic"] == 1
    assert [r.kind for r in e.mappings(1.0)] == ["dynamic"]


def test_a_forward_set_later_over_an_explicit_mapping_ends_it():
    e = engine()
    e.map_port("upnp", TCP, ALICE, 8443, None, (), 0.0)
    policy = e.policy.replace(forwards=(PortForward(Protocol.TCP, 8443, "192.168.1.3", 443),))
    tick = e.reconfigure(policy, 1.0)
    assert "port-mapping-deleted" in kinds(tick)
    assert [r.kind for r in e.mappings(1.0)] == ["forward"]
    assert e.port_mapping_counters()["conflicts.replaced-by-forward"] == 1


def test_dynamic_allocation_never_takes_an_explicitly_mapped_port():
    e = engine()
    e.map_port("natpmp", UDP, Endpoint.of("192.168.1.9", 9), 5000, None, (), 0.0)
    verdict = outbound(e, 5000, PEER, 53, 1.0)  # port preservation would pick 5000
    assert int.from_bytes(verdict.data[20:22], "big") != 5000


def test_an_unknown_kind_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="not a port mapping kind"):
        engine().map_port("dynamic", UDP, ALICE, 6000, None, (), 0.0)


def test_events_name_the_kind_and_the_table_counts_them():
    e = engine()
    tick = e.map_port("pcp", UDP, ALICE, 6000, 30.0, (), 0.0, "game")
    event = tick.events[0]
    assert event.kind is EventKind.PORT_MAPPING_CREATED and event.detail.startswith("pcp:")
    assert "game" in event.detail and event.external == f"{POOL}:6000"
    assert e.port_mapping_counters() == {"active": 1, "created": 1}


def test_a_fast_path_entry_never_outlives_the_explicit_mapping_it_uses():
    e = engine()
    e.map_port("pcp", UDP, ALICE, 6000, 10.0, (), 0.0)
    packet = build.udp(PEER, 4000, POOL, 6000, b"hi")
    assert type(e.process(packet, Side.OUTSIDE, 1.0)) is Forward
    entry = e.fast_entry(packet, Side.OUTSIDE, 1.0, quantum=60.0)
    assert entry is not None and entry.expires == 10.0


def test_the_spec_leaves_a_default_port_mapping_out_of_its_policy():
    from natlab.behaviours.presets import load_preset
    from natlab.gateway.spec import policy_for_spec

    assert "port_mapping" not in policy_for_spec(load_preset("rfc-recommended").policy)
    assert policy_for_spec(load_preset("cgn").policy)["port_mapping"]["pcp"] is True
