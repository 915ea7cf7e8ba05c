"""Every RFC 4787 knob, observed from outside the NAT with real kernel UDP sockets.

One lab (e2e-one-nat.yaml) for the module; each test sets the knobs it is
about on top of rfc-recommended and flushes the table.
"""

from __future__ import annotations

import itertools

import pytest

from labkit import Held, ask, gateway, send_from

pytestmark = pytest.mark.netns

S1, S1_ALT = "203.0.113.100", "203.0.113.101"
S2 = "203.0.113.200"
P1, P2 = 3478, 3479

BASELINE = [
    "mapping=endpoint-independent", "filtering=endpoint-independent", "port_assignment=preserve",
    "port_parity=true", "hairpinning=external-source", "refresh=outbound", "timeouts.udp=300",
]

_ports = itertools.count(20000, 2)


def fresh_port() -> int:
    """An even source port no earlier test in this run used (no stale mapping or conntrack)."""
    return next(_ports)


@pytest.fixture
def nat(one_nat):
    client = gateway(one_nat, "nat")

    def configure(*knobs: str):
        client.set([*BASELINE, *knobs])
        client.flush()
        return client

    yield configure
    client.set(BASELINE)
    client.flush()


# --- mapping (RFC 4787 4.1, REQ-1) --------------------------------------------------

@pytest.mark.parametrize("mapping, second, same_port", [
    ("endpoint-independent", f"{S2}:{P1}", True),
    ("address-dependent", f"{S1}:{P2}", True),        # same address, other port: same mapping
    ("address-dependent", f"{S2}:{P1}", False),
    ("address-and-port-dependent", f"{S1}:{P2}", False),
    ("address-and-port-dependent", f"{S2}:{P1}", False),
])
def test_mapping_keeps_or_changes_the_external_port_across_destinations(one_nat, nat, mapping, second, same_port):
    nat(f"mapping={mapping}", "port_assignment=random")
    sport = fresh_port()
    replies = ask(one_nat, "alice", sport, f"{S1}:{P1}", second)
    assert [r["event"] for r in replies] == ["reply", "reply"], replies
    first_seen, second_seen = (r["seen"] for r in replies)
    assert first_seen.split(":")[0] == second_seen.split(":")[0] == "203.0.113.1"
    assert (first_seen == second_seen) is same_port, replies


# --- filtering (RFC 4787 5, REQ-8) --------------------------------------------------

@pytest.mark.parametrize("filtering, from_s1_other_port, from_s2", [
    ("endpoint-independent", True, True),
    ("address-dependent", True, False),
    ("address-and-port-dependent", False, False),
])
def test_filtering_admits_unsolicited_packets_per_dependency(one_nat, nat, filtering, from_s1_other_port, from_s2):
    nat(f"filtering={filtering}")
    # two sender processes must start within the hold (about 1 s each on a busy machine)
    held = Held(one_nat, "alice", fresh_port(), f"{S1}:{P1}", seconds=4.0)
    try:
        send_from(one_nat, "s1", f"{S1}:{P2}", held.external, "from-s1-p2")
        send_from(one_nat, "s2", f"{S2}:{P1}", held.external, "from-s2-p1")
        got = held.received()
    finally:
        held.close()
    assert (f"{S1}:{P2}" in got) is from_s1_other_port, got
    assert (f"{S2}:{P1}" in got) is from_s2, got


# --- port assignment (REQ-3) and parity (REQ-4) -------------------------------------

def test_port_preservation_keeps_the_source_port(one_nat, nat):
    nat("port_assignment=preserve")
    for sport in (fresh_port(), fresh_port() + 1):
        (reply,) = ask(one_nat, "alice", sport, f"{S1}:{P1}")
        assert reply["seen"] == f"203.0.113.1:{sport}"


@pytest.mark.parametrize("parity", [0, 1])
def test_random_ports_keep_parity_when_asked(one_nat, nat, parity):
    nat("port_assignment=random", "port_parity=true")
    seen = []
    for _ in range(6):
        (reply,) = ask(one_nat, "alice", fresh_port() + parity, f"{S1}:{P1}")
        seen.append(int(reply["seen"].split(":")[1]))
    assert all(port % 2 == parity for port in seen), seen
    assert len(set(seen)) == len(seen)


def test_random_ports_without_parity_use_both_parities(one_nat, nat):
    nat("port_assignment=random", "port_parity=false")
    seen = [int(ask(one_nat, "alice", fresh_port(), f"{S1}:{P1}")[0]["seen"].split(":")[1])
            for _ in range(12)]
    assert {port % 2 for port in seen} == {0, 1}, seen


# --- hairpinning (RFC 4787 6, REQ-9) ------------------------------------------------

@pytest.mark.parametrize("hairpinning, source", [
    ("external-source", "203.0.113.1"),
    ("internal-source", "192.168.1.10"),
    ("none", None),
])
def test_hairpinning_delivers_with_the_right_source(one_nat, nat, hairpinning, source):
    nat(f"hairpinning={hairpinning}")
    held = Held(one_nat, "bob", fresh_port(), f"{S1}:{P1}", seconds=3.0)
    alice_port = fresh_port()
    try:
        send_from(one_nat, "alice", f"0.0.0.0:{alice_port}", held.external, "hairpin")
        got = held.received()
    finally:
        held.close()
    if source is None:
        assert got == []
    else:
        assert got == [f"{source}:{alice_port}"]


# --- timers and refresh (RFC 4787 4.3, REQ-5, REQ-6) -----------------------------------

def test_mapping_expires_after_the_udp_timer(one_nat, nat):
    client = nat("timeouts.udp=120")
    held = Held(one_nat, "alice", fresh_port(), f"{S1}:{P1}", seconds=1.5)
    try:
        assert client.mappings()
        client.advance(121)
        assert client.mappings() == []
        send_from(one_nat, "s1", f"{S1}:{P1}", held.external, "too-late")
        got = held.received()
    finally:
        held.close()
    assert got == []


@pytest.mark.parametrize("refresh, alive", [("outbound", False), ("inbound", True), ("both", True)])
def test_inbound_packet_refreshes_the_mapping_per_refresh_knob(one_nat, nat, refresh, alive):
    client = nat("timeouts.udp=120", f"refresh={refresh}")
    # The hold must outlast two advances and two sends, each send a probe process started in
    # a namespace: 0.5-1 s apiece on a loaded 2-core machine (2 s was too short there).
    held = Held(one_nat, "alice", fresh_port(), f"{S1}:{P1}", seconds=5.0)
    try:
        client.advance(80)
        send_from(one_nat, "s1", f"{S1}:{P1}", held.external, "keepalive")
        client.advance(80)  # 160 s after the last outbound packet, 80 s after the inbound one
        assert bool(client.mappings()) is alive
        send_from(one_nat, "s1", f"{S1}:{P1}", held.external, "after")
        got = held.received()
    finally:
        held.close()
    assert got.count(f"{S1}:{P1}") == (2 if alive else 1), got
