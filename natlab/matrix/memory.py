"""The UDP hole-punching traversal matrix over presets, run in memory.

Theory of operation
-------------------
For each ordered pair of presets (A, B) a two-homes network is built
(:func:`two_homes`): alice behind ``nat-a`` (preset A), bob behind ``nat-b``
(preset B), both at the same private address as real homes are, and a public
rendezvous server. Each peer sends to the server from port 40000; the server
answers with the source it saw (a STUN binding, RFC 8489), so each peer learns
its server-reflexive endpoint. Then both punch, ICE-style (RFC 8445): for
``rounds`` rounds, alternating who goes first and advancing the clock 0.2 s a
round, each sends to every candidate it knows of the other: the reflexive
endpoint from the server, plus the source of any datagram it has had from the
peer (a peer-reflexive candidate, RFC 8445 7.3.1.3). Success: both heard the other.

What RFC 4787 predicts (M = mapping, F = filtering; EIM/EIF endpoint-independent,
ADF address-dependent, APDM/APDF address-and-port-dependent):

- EIM on both sides (full, restricted and port-restricted cone): the reflexive
  endpoint is the one the peer will see. Each side's first packet to the other
  opens its own filter for exactly the peer's endpoint, so the peer's next packet
  passes whatever the filtering. Succeeds.
- symmetric (APDM) vs full cone (EIF): alice's packet to bob leaves from a new
  port p1, not the reflexive one, but EIF admits it; bob learns ``A:p1`` as a
  peer-reflexive candidate and answers it, which alice's APDF admits (alice sent
  to bob's endpoint from that mapping). Succeeds.
- symmetric vs restricted cone (ADF): bob's packets to alice's reflexive
  endpoint are dropped by alice's APDF (that mapping only ever spoke to the
  server), but they open bob's ADF for alice's *address*, so alice's packet from
  the unknown port p1 passes. Bob then answers ``A:p1``, as above. Succeeds.
- symmetric vs port-restricted cone (APDF): bob's filter only opens for the
  reflexive ``A:port`` he sends to, never for ``A:p1``; alice's filter drops bob's
  packets to the server-facing mapping. Nobody hears anybody. Fails.
- symmetric vs symmetric: both reflexive endpoints are wrong, both filters are
  APDF. Fails (short of port prediction, which this does not model).

The table is symmetric in (A, B).

With ``port_mapping`` (NAT-PMP, PCP or UPnP IGD turned on at both NATs) each
peer first maps its port 40000 with natlab's client and offers the mapped
endpoint as a candidate too, as Tailscale and libp2p do. A mapping admits
every remote (RFC 6887 section 11.1) and the peer's packets leave from it, so
every pair succeeds, symmetric against symmetric included (:data:`EXPECTED_MAPPED`).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Iterable, Optional

from natlab.realisers.memory.network import MemNet
from natlab.behaviours.presets import resolve

__all__ = ["CLASSIC", "EXPECTED_CLASSIC", "EXPECTED_MAPPED", "PORT_MAPPING", "PunchResult", "format_matrix",
           "mapped", "punch", "reflexive", "run_matrix", "two_homes"]

CLASSIC = ("full-cone", "restricted-cone", "port-restricted-cone", "symmetric")
SERVER, STUN_PORT, PEER_PORT = "198.51.100.10", 3478, 40000
POOLS = {"alice": "203.0.113.1", "bob": "203.0.113.2"}
ROUND_SECONDS = 0.2

_FAILS = {frozenset({"symmetric"}), frozenset({"symmetric", "port-restricted-cone"})}

EXPECTED_CLASSIC: dict[tuple[str, str], bool] = {
    (a, b): frozenset({a, b}) not in _FAILS for a, b in itertools.product(CLASSIC, repeat=2)
}
"""RFC 4787's prediction for the four RFC 3489 classes (see the module docstring)."""

EXPECTED_MAPPED: dict[tuple[str, str], bool] = {key: True for key in EXPECTED_CLASSIC}
"""With a port mapped at both NATs every pair gets through."""
PORT_MAPPING = ("natpmp", "pcp", "upnp")
GATEWAY = "192.168.1.1"

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class PunchResult:
    """How one pair fared: who heard whom, and after how many rounds."""

    alice_heard_bob: bool
    bob_heard_alice: bool
    rounds: int

    @property
    def ok(self) -> bool:
        return self.alice_heard_bob and self.bob_heard_alice


def two_homes(preset_a: str, preset_b: str, seed: int, port_mapping: Optional[str] = None) -> MemNet:
    """alice behind nat-a (``preset_a``), bob behind nat-b (``preset_b``), a public server;
    ``port_mapping`` ("natpmp", "pcp", "upnp") turns that protocol on at both NATs."""
    net = MemNet(seed)
    for peer, nat, preset in (("alice", "nat-a", preset_a), ("bob", "nat-b", preset_b)):
        policy = resolve(preset).policy
        if port_mapping:
            policy = policy.replace(port_mapping=dataclasses.replace(policy.port_mapping, **{port_mapping: True}))
        net.add_nat(nat, policy, [POOLS[peer]], "192.168.1.0/24", inside_address=GATEWAY)
        net.add_host(peer, "192.168.1.2", behind=nat)
    net.add_host("server", SERVER)
    return net


def reflexive(net: MemNet, peer: str) -> Endpoint:
    """A STUN binding: the peer asks, the server answers with the source it saw."""
    net.send_udp(peer, PEER_PORT, SERVER, STUN_PORT, b"binding-request")
    for d in net.recv("server", STUN_PORT):
        net.send_udp("server", STUN_PORT, d.src, d.sport, f"{d.src}:{d.sport}".encode())
    answers = [d.payload.decode() for d in net.recv(peer, PEER_PORT) if d.src == SERVER]
    if not answers:
        return ("0.0.0.0", 0)  # no binding: the punch below will simply fail
    addr, port = answers[-1].rsplit(":", 1)
    return addr, int(port)


def mapped(net: MemNet, peer: str, protocol: str) -> Optional[Endpoint]:
    """The endpoint the peer's NAT maps its port to (natlab's client), or None if refused."""
    from natlab.portmap.client import PortMapRequest, request
    from natlab.realisers.memory.driver import MemNetTransport

    ask = PortMapRequest(protocol, PEER_PORT, gateway=GATEWAY, external_port=PEER_PORT, lifetime=600)
    ports = itertools.count(45000)
    stack = net.stack(peer)
    stack.answers = True  # the peers are sinks; UPnP's HTTP needs their TCP handshakes
    try:
        answer = request(ask, MemNetTransport(net, peer, lambda _proto: next(ports)), net.address(peer))
    finally:
        stack.answers = False
    return (answer.external_address, answer.external_port) if answer.external else None


def punch(net: MemNet, rounds: int = 10, port_mapping: Optional[str] = None) -> PunchResult:
    """Both peers learn their reflexive endpoints (and map their port), then punch for ``rounds`` rounds."""
    candidates = {"alice": {reflexive(net, "bob")}, "bob": {reflexive(net, "alice")}}
    if port_mapping:
        for peer, other in (("alice", "bob"), ("bob", "alice")):
            endpoint = mapped(net, other, port_mapping)
            if endpoint is not None:
                candidates[peer].add(endpoint)
    heard = {"alice": False, "bob": False}
    for n in range(rounds):
        order = ("alice", "bob") if n % 2 == 0 else ("bob", "alice")
        for peer in order:
            for addr, port in sorted(candidates[peer]):
                net.send_udp(peer, PEER_PORT, addr, port, f"punch from {peer}".encode())
        for peer in order:
            for d in net.recv(peer, PEER_PORT):
                if d.src != SERVER:
                    heard[peer] = True
                    candidates[peer].add((d.src, d.sport))  # peer-reflexive
        net.advance(ROUND_SECONDS)
        if all(heard.values()):
            return PunchResult(True, True, n + 1)
    return PunchResult(heard["alice"], heard["bob"], rounds)


def run_matrix(presets: Iterable[str] = CLASSIC, seed: int = 0, rounds: int = 10,
               port_mapping: Optional[str] = None) -> dict[tuple[str, str], bool]:
    """Hole punching between every ordered pair of ``presets``: (a, b) -> succeeded."""
    names = tuple(presets)
    return {(a, b): punch(two_homes(a, b, seed, port_mapping), rounds, port_mapping).ok
            for a, b in itertools.product(names, repeat=2)}


def format_matrix(results: dict[tuple[str, str], bool], seed: int) -> str:
    """The matrix as a text table (rows: alice's preset, columns: bob's), with its seed."""
    names = list(dict.fromkeys(a for a, _ in results))
    width = max(len(n) for n in names)
    lines = [f"hole punching (seed {seed})", " " * width + "  " + "  ".join(names)]
    for a in names:
        cells = [("ok" if results[(a, b)] else "FAIL").ljust(len(b)) for b in names]
        lines.append((a.ljust(width) + "  " + "  ".join(cells)).rstrip())
    return "\n".join(lines)
