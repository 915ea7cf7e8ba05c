"""The hole-punch panel: natlab's built-in peer between two hosts, drawn as a sequence diagram.

Theory of operation
-------------------
An attempt is what the scenario ``punch`` step does (:mod:`natlab.scenario.punch`,
through :func:`natlab.explore.backend.run_punch`), so the recorded step replays it:

- *On a real lab* (netns, Docker) the built-in peer itself runs: ``python -m
  natlab.hostprogs.peer rendezvous`` on the rendezvous host, then ``punch`` on
  both peers, as the traversal matrix runs them, with ``--trace`` so every
  datagram each one sent and received is a line. Each gateway's events and
  mapping table are read before and after; :func:`natlab.explore.punchwalk.from_traces`
  matches each datagram sent with its receipt and tells from the gateways'
  records which NAT translated, opened or filtered it. When the peers are done
  (or their time is up) whatever is still running, the rendezvous at least, is
  ended by PID (the driver's ``stop_spawned``).
- *On the memory twin*, which runs no programs, it is a simulation, and the page
  says so: the peer's own state machines (``Punch`` for each peer, ``Sessions``
  for the rendezvous, from :mod:`natlab.hostprogs.peer`) run in this process,
  and each datagram they send is a probe through the twin, traced hop by hop.

Both give the same rows (:func:`natlab.explore.walk.packets` shape, plus a
label), marked with the datagrams that opened a NAT
(:func:`~natlab.explore.punchwalk.mark_openings`) and folded where a peer
repeats itself (:func:`~natlab.explore.punchwalk.fold`). The attempt is
recorded as one ``punch`` step whose expectation is the outcome seen.
"""

from __future__ import annotations

import itertools
from typing import Any

from natlab.explore import backend, eventwalk, punchwalk
from natlab.explore.topoview import nat_chain

__all__ = ["hole_punch"]

EVENTS_ASKED = 10_000
"""Events asked of each gateway after an attempt (a failing one records a drop per check)."""
_COUNTER = itertools.count(1)

TWIN_NOTE = ("Simulated on the in-memory twin, which runs no programs: this is not the peer program. "
             "The peer's own algorithm ran in the workbench: natlab.hostprogs.peer's state machines (Punch for "
             "each peer, Sessions for the rendezvous), each datagram they sent carried through the twin's NATs "
             "as a traced probe, a round every {interval:g} s of the twin's clock.")
LAB_NOTE = ("The built-in peer ran: python -m natlab.hostprogs.peer punch --trace on {a} and {b}, its rendezvous "
            "on {server}. Each row is a datagram one of them sent, matched with the receiver's trace; what the "
            "NATs did is told from their events and mapping tables.")


def hole_punch(wb: Any, a: str, b: str, server: str, timeout: float) -> dict[str, Any]:
    """Punch between hosts ``a`` and ``b`` via the rendezvous on ``server``; record it; the diagram."""
    plan = backend.punch_plan((a, b), server, timeout)
    tag = f"explore{next(_COUNTER)}"
    lanes = list(dict.fromkeys([a, *nat_chain(wb.topo, a), server, *reversed(nat_chain(wb.topo, b)), b]))
    before = {gw: wb.driver.mappings(gw) for gw in wb.gateways}
    if backend.runs_programs(wb.driver.backend):
        run, messages = _on_lab(wb, plan, tag)
        note = LAB_NOTE.format(a=a, b=b, server=server)
    else:
        run, messages = _on_twin(wb, plan, tag)
        note = TWIN_NOTE.format(interval=plan.interval)
        for gw in wb.gateways.values():  # the twin's clock moved a round at a time
            gw.clock += run.seconds
    after = {gw: wb.driver.mappings(gw) for gw in wb.gateways}
    filtering = {gw: backend.policy_to_dict(m.policy).get("filtering", "") for gw, m in wb.gateways.items()}
    punchwalk.mark_openings(messages, before, after, filtering)
    body: dict[str, Any] = {"peers": [a, b], "rendezvous": server, "timeout": plan.timeout}
    wb.recording.add("punch", body, run.summary(), expect={"punched": run.ok})
    sides = {n: s.to_dict() for n, s in run.sides.items()}
    return {"ok": run.ok, "how": run.how, "note": note, "lanes": lanes, "messages": punchwalk.fold(messages),
            "datagrams": len(messages), "seconds": round(run.seconds, 3), "sides": sides,
            "reflexive": {n: (s.report or {}).get("reflexive") for n, s in run.sides.items()},
            "candidates": {n: (s.report or {}).get("candidates", []) for n, s in run.sides.items()},
            "summary": run.summary()}


def _on_twin(wb: Any, plan: Any, tag: str) -> tuple[Any, list[dict[str, Any]]]:
    """The peer's core in process; every datagram a traced probe."""
    messages: list[dict[str, Any]] = []

    def carry(probe: Any, message: dict[str, Any], sender: str) -> Any:
        result, _walk, pkts = wb.traced_probe(probe)
        who = {plan.rendezvous: "rendezvous"}
        meant = probe.receiver or (next(p for p in plan.peers if p != sender) if message.get("t") == "punch" else None)
        label, kind = punchwalk.label_of(message, who.get(sender, sender), who.get(meant, meant) if meant else None,
                                         f"{probe.dst}:{probe.dport}")
        for i, pkt in enumerate(pkts):
            what = label if i == 0 else f"{pkt['from']} answers ({label})"
            messages.append({**pkt, "label": what, "kind": kind if i == 0 else "answer", "phase": kind})
        return result

    return backend.run_punch(wb.driver, plan, tag, carry=carry), messages


def _on_lab(wb: Any, plan: Any, tag: str) -> tuple[Any, list[dict[str, Any]]]:
    """The programs, traced; the gateways' records before and after; then nothing left running."""
    before = wb._records()
    try:
        run = backend.run_punch(wb.driver, plan, tag, trace=True, wait_rendezvous=False)
    finally:
        wb.driver.stop_spawned()  # by PID: the rendezvous, and a peer that overran
    after = wb._records()
    seen = {}
    for gw, (mark, rows, _inside, _outside) in before.items():
        new = sorted((e for e in wb.driver.events(gw, EVENTS_ASKED) if e["seq"] > mark),
                     key=lambda e: float(e.get("ts", 0.0)))
        seen[gw] = eventwalk.Seen(gw, tuple(new), rows, after[gw][1])
    sides = {n: (s.host, s.lines) for n, s in run.sides.items()}
    sides["rendezvous"] = (run.rendezvous.host, run.rendezvous.lines)
    hosts = [*plan.peers, plan.rendezvous]
    addresses = {h: wb.driver.addresses(h)[0] for h in hosts}
    ports = {**{p: plan.sport for p in plan.peers}, "rendezvous": plan.port}
    return run, punchwalk.from_traces(wb._network(), sides, seen, addresses, ports, run.started)
