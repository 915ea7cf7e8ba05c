"""End to end through the real gateway daemon: hosts behind NATs reach the internet."""

from __future__ import annotations

import pytest

from natlab.lab import up


from natlab.realisers.netns import namespaces as netns
from labkit import ping, root_snapshot, udp_source_seen

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("needs_daemon")]


def test_two_homes_hosts_reach_the_server_through_their_nat(topology, lab_name) -> None:
    before = root_snapshot()
    with up(topology("two-homes")) as lab:
        assert ping(lab, "alice", "203.0.113.100")
        src, _ = udp_source_seen(lab, "alice", "server", "203.0.113.100")
        assert src == "203.0.113.1"  # nat-a's (picked) pool address
        src, _ = udp_source_seen(lab, "bob", "server", "203.0.113.101", port=4001)
        assert src in ("203.0.113.21", "203.0.113.22")
        for gw in lab.state.gateways.values():
            assert gw["pid"] and gw["behaviour"] in ("port-restricted-cone", "symmetric")
    assert netns.lab_namespaces(lab_name) == []
    assert root_snapshot() == before


def test_double_nat_shows_the_cgn_address(topology, lab_name) -> None:
    with up(topology("double-nat")) as lab:
        src, _ = udp_source_seen(lab, "alice", "server", "203.0.113.100")
        assert src == "203.0.113.10"
        src, _ = udp_source_seen(lab, "neighbour", "server", "203.0.113.100", port=4001)
        assert src == "203.0.113.10"


@pytest.mark.parametrize("name", ["one-home", "hairpin", "pool"])
def test_shipped_topology_comes_up_and_reaches_the_internet(topology, lab_name, name) -> None:
    with up(topology(name)) as lab:
        wan = next(h for h, e in lab.state.hosts.items()
                   if lab.state.networks[e["network"]]["gateway"] is None)
        target = str(lab.host_address(wan))
        for host, entry in lab.state.hosts.items():
            if host != wan and lab.state.networks[entry["network"]]["gateway"]:
                assert ping(lab, host, target), host
    assert netns.lab_namespaces(lab_name) == []


def test_a_failing_gateway_rolls_the_whole_lab_back(topology, lab_name, monkeypatch) -> None:
    from natlab.errors import LabError
    from natlab.realisers.netns import build as runner
    monkeypatch.setattr(runner, "SOCKET_TIMEOUT", 0.0)
    with pytest.raises(LabError, match="gateway 'nat'.*control socket"):
        up(topology("one-home"))
    assert netns.lab_namespaces(lab_name) == []
