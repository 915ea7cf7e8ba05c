"""The in-memory network: packets walk through NAT engines on a manual clock."""

import random
from ipaddress import IPv4Address
from pathlib import Path

from natlab.engine import Engine, Side
from natlab.realisers.memory.network import Datagram, Delivered, Dropped, MemNet
from natlab.packet import build
from natlab.packet.headers import parse_packet
from natlab.behaviours.presets import resolve
from natlab.topology.load import load

SERVER, POOL = "198.51.100.10", "203.0.113.1"


def one_nat(preset: str, seed: int = 1) -> MemNet:
    net = MemNet(seed)
    net.add_nat("nat", resolve(preset).policy, [POOL], "192.168.1.0/24")
    net.add_host("alice", "192.168.1.2", behind="nat")
    net.add_host("server", SERVER)
    return net


def test_udp_exchange_through_one_nat_and_back():
    net = one_nat("port-restricted-cone")
    assert net.send_udp("alice", 40000, SERVER, 3478, b"ping") == Delivered("server", ("nat",))
    [got] = net.recv("server", 3478)
    assert got.src == POOL and got.payload == b"ping"
    assert net.send_udp("server", 3478, got.src, got.sport, b"pong") == Delivered("alice", ("nat",))
    assert net.recv("alice", 40000) == [Datagram(SERVER, 3478, b"pong")]
    assert net.recv("alice", 40000) == []  # recv takes what it returns


def test_filtering_drops_unsolicited_port():
    net = one_nat("port-restricted-cone")
    net.send_udp("alice", 40000, SERVER, 3478, b"ping")
    [got] = net.recv("server", 3478)
    out = net.send_udp("server", 9999, got.src, got.sport, b"other port")
    assert isinstance(out, Dropped) and (out.where, out.reason) == ("nat", "filtered")
    assert net.recv("alice", 40000) == []


def test_full_cone_admits_any_remote():
    net = one_nat("full-cone")
    net.add_host("stranger", "198.51.100.77")
    net.send_udp("alice", 40000, SERVER, 3478)
    [got] = net.recv("server", 3478)
    assert net.send_udp("stranger", 5, got.src, got.sport, b"hi") == Delivered("alice", ("nat",))


def test_advance_expires_mappings():
    net = one_nat("port-restricted-cone")
    net.send_udp("alice", 40000, SERVER, 3478)
    [got] = net.recv("server", 3478)
    assert len(net.nat("nat").mappings()) == 1
    net.advance(301)
    assert net.nat("nat").mappings() == ()
    out = net.send_udp("server", 3478, got.src, got.sport)
    assert isinstance(out, Dropped) and out.reason == "no-mapping"


def test_no_route_and_unknown_address():
    net = one_nat("full-cone")
    out = net.send_udp("server", 1, "10.9.9.9", 1)
    assert out == Dropped("internet", "no-route", ())


def test_hosts_behind_same_nat_talk_directly():
    net = one_nat("full-cone")
    net.add_host("bob", "192.168.1.3", behind="nat")
    assert net.send_udp("alice", 1, "192.168.1.3", 2, b"x") == Delivered("bob", ())


def test_hairpin_through_own_pool_address():
    net = one_nat("full-cone")
    net.add_host("bob", "192.168.1.3", behind="nat")
    net.send_udp("bob", 5000, SERVER, 3478)
    [seen] = net.recv("server", 3478)
    out = net.send_udp("alice", 6000, seen.src, seen.sport, b"hp")
    assert out == Delivered("bob", ("nat",))
    [got] = net.recv("bob", 5000)
    assert got.src == POOL  # external-source hairpinning


def test_chained_nats():
    net = MemNet(3)
    policy = resolve("full-cone").policy
    net.add_nat("cgn", policy, ["203.0.113.9"], "100.64.0.0/10")
    net.add_nat("home", policy, ["100.64.0.2"], "192.168.1.0/24", behind="cgn")
    net.add_host("alice", "192.168.1.2", behind="home")
    net.add_host("server", SERVER)
    assert net.send_udp("alice", 40000, SERVER, 7) == Delivered("server", ("home", "cgn"))
    [got] = net.recv("server", 7)
    assert got.src == "203.0.113.9"
    assert net.send_udp("server", 7, got.src, got.sport, b"back") == Delivered("alice", ("cgn", "home"))


def test_same_seed_same_ports():
    def reflexive(seed):
        net = one_nat("symmetric", seed)
        net.send_udp("alice", 40000, SERVER, 3478)
        return net.recv("server", 3478)[0].sport
    assert reflexive(7) == reflexive(7)


# -- the twin of a topology ------------------------------------------------------------

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def twin(name: str, seed=None) -> MemNet:
    return MemNet.from_topology(load(TOPOLOGIES / f"{name}.yaml"), seed)


def icmp_types(net: MemNet, host: str) -> list[tuple[int, int]]:
    return [(p.l4.type, p.l4.code) for p in map(parse_packet, net.stack(host).inbox) if p.ip.proto == 1]


def test_topology_chains_a_nat_behind_another_nat():
    net = twin("double-nat")
    assert net.nat("home-router").realm == "cgn" and net.nat("cgn").realm is None
    assert net.send_udp("alice", 1, "203.0.113.100", 7) == Delivered("server", ("home-router", "cgn"))
    assert net.send_udp("alice", 1, net.address("neighbour"), 7) == Delivered("neighbour", ("home-router",))


def test_topology_gateway_engines_use_the_gateway_seed():
    topo = load(TOPOLOGIES / "two-homes.yaml")
    gw = next(g for g in topo.gateways if g.name == "nat-b")
    reference = Engine(resolve(gw.behaviour, overrides=gw.overrides).policy, [str(a) for a in gw.pool],
                       random.Random(gw.seed))
    packet = build.udp("192.168.2.2", 40000, "203.0.113.100", 3478)
    expected = parse_packet(bytes(reference.process(packet, Side.INSIDE, 0.0).data))
    net = MemNet.from_topology(topo)
    net.stack("server").bind_udp(3478)
    net.send_udp("bob", 40000, "203.0.113.100", 3478)
    [got] = net.recv("server", 3478)
    assert (got.src, got.sport) == (str(IPv4Address(expected.ip.src)), expected.l4.sport)


def test_host_with_several_addresses_receives_on_each():
    net = twin("two-homes")
    assert net.addresses("server") == ["203.0.113.100", "203.0.113.101"]
    for addr in net.addresses("server"):
        assert net.send_udp("alice", 1, addr, 9) == Delivered("server", ("nat-a",))


def test_raw_packets_can_be_sent_from_a_host():
    net = twin("one-home")
    net.stack("server").bind_udp(53)
    out = net.send("alice", build.udp("192.168.1.2", 5353, "203.0.113.100", 53, b"raw", ttl=3))
    assert out == Delivered("server", ("nat",))
    assert net.recv("server", 53)[0].payload == b"raw"


def test_udp_probe_to_closed_port_gets_port_unreachable():
    net = twin("one-home")
    net.send_udp("alice", 4000, "203.0.113.100", 9)
    assert icmp_types(net, "alice") == [(3, 3)]  # translated back through the NAT (RFC 5508)


def test_udp_to_a_bound_port_gets_no_answer():
    net = twin("one-home")
    net.stack("server").bind_udp(9)
    net.send_udp("alice", 4000, "203.0.113.100", 9)
    assert icmp_types(net, "alice") == []


def test_echo_request_is_answered_through_the_nat():
    net = twin("one-home")
    assert net.ping("alice", "203.0.113.100", ident=42) == Delivered("server", ("nat",))
    [reply] = [p for p in map(parse_packet, net.stack("alice").inbox) if p.ip.proto == 1]
    assert (reply.l4.type, reply.l4.ident) == (0, 42)


def test_tcp_syn_to_listening_port_completes_the_handshake():
    net = twin("one-home")
    net.stack("server").listen_tcp(80)
    conn, out = net.connect_tcp("alice", 5000, "203.0.113.100", 80)
    assert out == Delivered("server", ("nat",)) and conn.state == "established"
    [accepted] = net.stack("server").accepted
    assert accepted.state == "established"
    assert accepted.remote_label.startswith(net.nat("nat").engine.external_addresses[0] + ":")


def test_tcp_syn_to_closed_port_gets_a_rst():
    net = twin("one-home")
    conn, _ = net.connect_tcp("alice", 5000, "203.0.113.100", 81)
    assert conn.state == "refused"


def test_advance_one_gateway_expires_only_its_mappings():
    net = twin("two-homes")
    net.send_udp("alice", 1, "203.0.113.100", 9)
    net.send_udp("bob", 1, "203.0.113.100", 9)
    net.advance_gateway("nat-a", 301)
    assert net.nat("nat-a").mappings() == () and len(net.nat("nat-b").mappings()) == 1
    assert (net.now, net.now_of("nat-a"), net.now_of("nat-b")) == (0.0, 301.0, 0.0)
    net.advance(301)
    assert net.nat("nat-b").mappings() == ()


def test_set_pool_keeps_routing_right():
    net = twin("one-home")
    old = net.nat("nat").engine.external_addresses[0]
    net.set_pool("nat", ["203.0.113.77"])
    net.stack("server").bind_udp(9)
    net.send_udp("alice", 4000, "203.0.113.100", 9)
    [got] = net.recv("server", 9)
    assert got.src == "203.0.113.77"
    assert net.send_udp("server", 9, "203.0.113.77", got.sport) == Delivered("alice", ("nat",))
    assert net.send_udp("server", 9, old, got.sport) == Dropped("internet", "no-route", ())


def test_events_are_numbered_per_gateway_like_the_gateway_service():
    net = twin("one-home")
    net.send_udp("alice", 4000, "203.0.113.100", 9)
    net.send_udp("server", 1, net.nat("nat").engine.external_addresses[0], 1)
    kinds = [(e["seq"], e["kind"]) for e in net.nat("nat").events]
    assert kinds[0] == (1, "mapping-created") and kinds[-1] == (len(kinds), "dropped")
    assert net.nat("nat").events[-1]["reason"] == "no-mapping" and net.nat("nat").events[-1]["side"] == "outside"
