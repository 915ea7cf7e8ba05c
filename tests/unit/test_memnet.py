"""The in-memory network: packets walk through NAT engines on a manual clock."""

from natlab.memnet import Datagram, Delivered, Dropped, MemNet
from natlab.presets import resolve

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
