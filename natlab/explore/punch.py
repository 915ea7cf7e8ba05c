"""UDP hole punching between two hosts, played with probes, drawn as a sequence diagram.

Theory of operation
-------------------
The same moves as the built-in peer (:mod:`natlab.peer`) and the memory matrix
(:mod:`natlab.matrix`), made of the workbench's own probes so each one is
traced, shown and recorded like any other:

1. *Candidates.* Each peer sends from its punching port (40000) to the
   rendezvous (3478), which answers the source it saw: the peer's
   server-reflexive endpoint (a STUN binding, RFC 8489).
2. *Checks.* For up to ``rounds`` rounds, alternating who goes first, each peer
   sends to every candidate it knows of the other (RFC 8445 connectivity
   checks). A datagram that arrives teaches the receiver a peer-reflexive
   candidate (RFC 8445 7.3.1.3): the source it saw. The clock moves 0.2 s a
   round (a ``wait`` step). It succeeds when both have heard the other.

The first punch towards a NAT that has not sent to the peer yet is usually
filtered there; it opens the sender's own NAT for the answer. Every packet in
the result says which NAT passed (and rewrote) or filtered it.
"""

from __future__ import annotations

from typing import Any

from natlab.explore.backend import Probe
from natlab.explore.topoview import nat_chain

__all__ = ["PEER_PORT", "RENDEZVOUS_PORT", "hole_punch"]

PEER_PORT, RENDEZVOUS_PORT = 40000, 3478
ROUND_SECONDS = 0.2


def hole_punch(wb: Any, a: str, b: str, server: str, rounds: int) -> dict[str, Any]:
    """Punch between hosts ``a`` and ``b`` via rendezvous ``server`` on workbench ``wb``."""
    lanes = list(dict.fromkeys([a, *nat_chain(wb.topo, a), server, *reversed(nat_chain(wb.topo, b)), b]))
    messages: list[dict[str, Any]] = []

    def send(src: str, to: str, dst: str, dport: int, receiver: str, listen: int, label: str, phase: str,
             reply: bool = False) -> Any:
        at = "" if receiver == server else f"{receiver}:{listen}"
        probe = Probe(proto="udp", src=src, dst=dst, dport=dport, sport=PEER_PORT, receiver=receiver,
                      listen_port=0 if receiver == server else listen, reply=reply)
        result, _walk, pkts = wb.traced_probe(probe)
        wb.recording.add_probe(probe, to, at, result, name=label)
        for pkt in pkts:
            messages.append({**pkt, "label": label, "phase": phase})
        return result

    reflexive: dict[str, str] = {}
    for peer in (a, b):
        got = send(peer, f"{server}:{RENDEZVOUS_PORT}", wb.driver.addresses(server)[0], RENDEZVOUS_PORT,
                   server, RENDEZVOUS_PORT, f"{peer} asks the rendezvous for its reflexive endpoint", "binding",
                   reply=True)
        reflexive[peer] = got.seen or ""
    other = {a: b, b: a}
    candidates = {p: {reflexive[other[p]]} - {""} for p in (a, b)}
    heard = {a: False, b: False}
    done = 0
    for n in range(rounds):
        done = n + 1
        for peer in ((a, b) if n % 2 == 0 else (b, a)):
            for cand in sorted(candidates[peer]):
                addr, port = cand.rsplit(":", 1)
                got = send(peer, cand, addr, int(port), other[peer], PEER_PORT,
                           f"round {n + 1}: {peer} -> {other[peer]} at {cand}", "check")
                if got.delivered and got.seen:
                    heard[other[peer]] = True
                    candidates[other[peer]].add(got.seen)
        wb.sleep_all(ROUND_SECONDS, f"round {n + 1} ends")
        if all(heard.values()):
            break
    return {"lanes": lanes, "messages": messages, "reflexive": reflexive, "heard": heard,
            "ok": all(heard.values()), "rounds": done,
            "candidates": {p: sorted(c) for p, c in candidates.items()}}
