"""IP address pooling (RFC 4787 4.1, REQ-2) with a pool of two, seen by reflectors."""

from __future__ import annotations

import itertools

import pytest

from labkit import ask, gateway

pytestmark = pytest.mark.netns

POOL = {"192.0.2.11", "192.0.2.12"}
SERVERS = [f"{a}:{p}" for a in ("192.0.2.100", "192.0.2.101", "192.0.2.200", "192.0.2.201") for p in (3478, 3479)]
_ports = itertools.count(30000)


def external_addresses(lab, sports: int) -> list[str]:
    """The external address of each of ``sports`` fresh sockets, each asking every server."""
    seen = []
    for _ in range(sports):
        replies = ask(lab, "p1", next(_ports), *SERVERS)
        assert all(r["event"] == "reply" for r in replies), replies
        seen += [r["seen"].split(":")[0] for r in replies]
    return seen


@pytest.mark.parametrize("pooling, addresses_used", [("paired", 1), ("arbitrary", 2)])
def test_pooling_across_many_mappings_of_one_host(pool_lab, pooling, addresses_used):
    client = gateway(pool_lab, "nat")
    client.set([f"pooling={pooling}", "mapping=address-and-port-dependent"])
    client.flush()
    seen = external_addresses(pool_lab, 3)  # 24 mappings
    assert set(seen) <= POOL
    assert len(set(seen)) == addresses_used, seen
    assert len(client.mappings()) == len(seen)
