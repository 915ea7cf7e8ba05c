"""A probe's walk (the hops :class:`~natlab.explore.backend.Tracer` saw) cut into packets.

A walk is a flat list of hops in the order they happened: ``send`` (a host puts
a packet on the wire, or answers one), ``nat`` (a gateway's verdict: the packet
before and after, or the drop reason), ``deliver`` (a host took it) and ``drop``
(no route). :func:`packets` cuts it at every ``send``: each packet then says who
sent it, which gateways it crossed and how it ended, which is what the probe
panel lists and the sequence diagram draws.
"""

from __future__ import annotations

from typing import Any

__all__ = ["packets"]


def packets(walk: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"from", "sent", "hops": [nat hops], "end", "outcome": delivered|dropped|lost, "reason"}]``."""
    out: list[dict[str, Any]] = []
    for hop in walk:
        if hop["t"] == "send":
            out.append({"from": hop["node"], "sent": hop.get("out", ""), "answer": bool(hop.get("answer")),
                        "hops": [], "end": None, "outcome": "lost", "reason": ""})
        elif not out:
            continue
        elif hop["t"] == "nat":
            out[-1]["hops"].append(hop)
            if hop["verdict"] == "drop":
                out[-1].update(end=hop["node"], outcome="dropped", reason=hop.get("reason", ""))
        elif hop["t"] == "deliver" and out[-1]["end"] is None:
            out[-1].update(end=hop["node"], outcome="delivered", received=hop.get("in", ""))
        elif hop["t"] == "drop":
            out[-1].update(end=hop["node"], outcome="dropped", reason=hop.get("reason", ""))
    return out
