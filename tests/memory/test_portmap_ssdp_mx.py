"""SSDP answers on the in-memory twin come after a random delay within MX (UPnP DA 1.1 section
1.3.3): the twin's manual clock and its seeded generator, never a sleep."""

from __future__ import annotations

from natlab.portmap import ssdp
from natlab.portmap.client import PortMapRequest
from natlab.realisers.memory.driver import MemoryDriver

TOPOLOGY = {
    "name": "pm-ssdp-mx",
    "seed": 11,
    "networks": {"internet": {"subnet": "203.0.113.0/24"}, "home": {"subnet": "192.168.1.0/24"}},
    "gateways": {"nat": {"behaviour": "home-router-internal-hairpin", "inside": "home", "outside": "internet",
                         "pool": ["203.0.113.1"]}},
    "hosts": {"alice": {"network": "home", "address": "192.168.1.10"},
              "server": {"network": "internet", "address": "203.0.113.100"}},
}
MX = 3


def arrival_times(lab: MemoryDriver, step: float = 0.05) -> list[float]:
    """Search ssdp:all with MX 3 from alice and note when each answer arrives (clock steps)."""
    net = lab.net
    net.stack("alice").bind_udp(40000)
    net.send_udp("alice", 40000, ssdp.MULTICAST_GROUP, ssdp.PORT, ssdp.MSearch("ssdp:all", MX).emit())
    times, waited = [0.0] * len(net.recv("alice", 40000)), 0.0
    while waited < MX + 1:
        net.advance(step)
        waited += step
        times += [round(waited, 2)] * len(net.recv("alice", 40000))
    return times


def test_m_search_answers_come_within_mx_not_at_once():
    times = arrival_times(MemoryDriver(TOPOLOGY))
    assert len(times) == 9  # every device and service of the IGD
    assert all(0 <= t <= MX + 0.05 for t in times)
    assert max(times) > 0.5  # spread over the window, not all at once


def test_the_delays_are_the_seeds():
    assert arrival_times(MemoryDriver(TOPOLOGY)) == arrival_times(MemoryDriver(TOPOLOGY))
    other = dict(TOPOLOGY, seed=12)
    assert arrival_times(MemoryDriver(other)) != arrival_times(MemoryDriver(TOPOLOGY))


def test_a_upnp_client_waits_on_the_manual_clock_for_the_answer():
    lab = MemoryDriver(TOPOLOGY)
    before = lab.net.now
    answer = lab.map_port("alice", PortMapRequest("upnp", 5000, external_port=5000, lifetime=600))
    assert answer.ok, answer
    assert 0 <= lab.net.now - before <= 2.0  # the client's search window (MX 1), on the twin's clock


def test_the_shell_the_netns_daemon_runs_holds_answers_for_its_timers():
    """The netns daemon calls the same ``on_udp`` (delays on) and sends ``due()`` when its select
    timeout (``PortmapSockets.wait``: the shell's next deadline) runs out: no blocking sleep."""
    from natlab.engine.types import Endpoint

    lab = MemoryDriver(TOPOLOGY)
    shell = lab.net.nats["nat"].portmap.shell
    now = shell.gateway.now()
    sent = shell.on_udp(ssdp.PORT, ssdp.MSearch("upnp:rootdevice", MX).emit(), Endpoint.of("192.168.1.10", 40001))
    assert sent == []
    assert shell.next_deadline() is not None and shell.next_deadline() <= now + MX
    answers = [s for s in shell.due() if s.from_port == ssdp.PORT]
    lab.net.now += MX
    answers += [s for s in shell.due() if s.from_port == ssdp.PORT]
    assert [str(s.to) for s in answers] == ["192.168.1.10:40001"]
