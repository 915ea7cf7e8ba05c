"""A hole-punching attempt as the sequence diagram draws it: one row per datagram, and what each NAT did.

Theory of operation
-------------------
Pure functions over what an attempt left behind.

:func:`from_traces` (real labs) reads the built-in peer's ``--trace`` lines:
each datagram a peer or the rendezvous *sent* (to whom, which message, its
number ``n``, the wall clock) and each one *received* (from which source, the
message with the sender's ``n``). A datagram was delivered exactly when its
receiver's trace names it, and the source there is what the receiver saw. What
happened between the hosts is told by :func:`natlab.explore.eventwalk.observed_walk`
from the gateways' records, one datagram at a time: the events of each gateway
are cut to the datagram's *window* (from its sending until the same sender
sends to the same destination again), so a ``filtered`` event is charged to
the one datagram it can belong to, and a ``mapping-created`` to the datagram
that created it; later datagrams of the same flow pass through the mapping rows.

:func:`mark_openings` (every backend) finds the datagram that *opened* each NAT
for a remote endpoint: the first one in the attempt leaving a NAT from an
internal endpoint towards a remote it had no session with before. It names the
mapping it created (``mapping-created``) and, with address- or
address-and-port-dependent filtering, the filter it opened (RFC 4787 REQ-8:
such a NAT admits the remote's address, or endpoint, once the inside has sent
to it); only a remote the NAT's table lists a session for afterwards counts.

:func:`fold` keeps the diagram readable: a peer repeats its checks every
round (and two peers that got through answer each other at once until they
stop), so each kind of datagram (same sender, message, way and fate) is drawn
twice and the rest are counted on one row.
"""

from __future__ import annotations

import bisect
from typing import Any, Mapping, Optional, Sequence

from natlab.explore.eventwalk import Endpoint, Network, Seen, flow_of_summary, observed_walk

__all__ = ["KEEP", "MAX_ROWS", "fold", "from_traces", "label_of", "mark_openings", "sender_of"]

KEEP = 2
"""Datagrams of one kind drawn before the rest are folded into a count."""
MAX_ROWS = 80
WINDOW = 1.0
"""Seconds after a datagram within which a gateway's record of it must fall (at most)."""
SLACK = 0.002
"""Seconds a gateway's record may seem to precede the send (clock rounding)."""


def sender_of(message: Mapping[str, Any], rendezvous: str = "rendezvous") -> Optional[str]:
    """Who sent a peer message: its name (register, punch) or the rendezvous (binding, peer)."""
    kind = message.get("t")
    if kind in ("binding", "peer"):
        return rendezvous
    return message.get("name") if kind == "register" else message.get("from")


def label_of(message: Mapping[str, Any], sender: str, receiver: Optional[str], to: str = "") -> tuple[str, str]:
    """(a one-line label, ``binding`` or ``check``) for a datagram carrying ``message`` to ``to``."""
    kind = message.get("t")
    if kind == "register":
        hosts = ", ".join(message.get("host") or []) or "none"
        return f"{sender} registers with the rendezvous (host candidate {hosts})", "binding"
    if kind == "binding":
        return f"rendezvous tells {receiver or '?'}: your reflexive endpoint is {message.get('reflexive')}", "binding"
    if kind == "peer":
        hosts = ", ".join(message.get("host") or [])
        return (f"rendezvous tells {receiver or '?'}: {message.get('name')} is at {message.get('reflexive')}"
                + (f" (host {hosts})" if hosts else ""), "binding")
    if kind == "punch":
        heard = "yes" if message.get("heard") else "no"
        return f"check {sender} -> {receiver or '?'}{' at ' + to if to else ''} (heard the peer: {heard})", "check"
    return f"{sender}: {kind}", "other"


# --- real labs: the peers' traces and the gateways' records -----------------------------------

def _windowed(seen: Seen, times: Sequence[float], start: float, end: float) -> Seen:
    lo = bisect.bisect_left(times, start - SLACK)
    hi = bisect.bisect_left(times, end - SLACK)
    return Seen(seen.name, seen.events[lo:hi], seen.before, seen.after)


def from_traces(net: Network, sides: Mapping[str, tuple[str, Sequence[Mapping[str, Any]]]],
                seen: Mapping[str, Seen], addresses: Mapping[str, str], ports: Mapping[str, int],
                started: float) -> list[dict[str, Any]]:
    """Each traced datagram as a packet (see :func:`natlab.explore.walk.packets`), oldest first.

    ``sides``: role (a peer's name, or ``rendezvous``) -> (its host, its JSON lines);
    ``seen``: each gateway's events during the attempt and mapping rows before and after;
    ``addresses``: host -> its address; ``ports``: role -> the port it sends from;
    ``started``: the wall clock at the start (``t`` is counted from it).
    """
    host_of = {role: host for role, (host, _) in sides.items()}
    registered = {str(ln.get("source")): str(ln.get("name")) for ln in sides.get("rendezvous", ("", ()))[1]
                  if ln.get("event") == "registered"}
    got: dict[tuple[Optional[str], Any], tuple[str, Mapping[str, Any]]] = {}
    sent: list[tuple[float, str, Mapping[str, Any]]] = []
    for role, (_, lines) in sides.items():
        for line in lines:
            message = line.get("message") or {}
            if line.get("event") == "received" and "n" in message:
                got[(sender_of(message), message["n"])] = (role, line)
            elif line.get("event") == "sent":
                sent.append((float(line.get("ts", 0.0)), role, line))
    sent.sort(key=lambda s: s[0])
    later: dict[tuple[str, str], float] = {}
    ends = []
    for ts, role, line in reversed(sent):  # each datagram's window ends when its sender repeats it
        key = (role, str(line.get("to")))
        ends.append(min(later.get(key, ts + WINDOW), ts + WINDOW))
        later[key] = ts
    ends.reverse()
    times = {gw: [float(e.get("ts", 0.0)) for e in s.events] for gw, s in seen.items()}
    out = []
    for (ts, role, line), end in zip(sent, ends):
        message = line.get("message") or {}
        to = Endpoint.parse(line.get("to")) or Endpoint(None, None)
        arrived = got.get((role, message.get("n")))
        receiver = arrived[0] if arrived else _meant_for(message, role, sides, registered.get(str(line.get("to"))))
        window = {gw: _windowed(s, times[gw], ts, end) for gw, s in seen.items()}
        pkt = _datagram(net, window, host_of, addresses, ports, role, to, arrived, receiver)
        label, kind = label_of(message, role, receiver, to.show())
        pkt.update(label=label, kind=kind, phase=kind, n=message.get("n"), t=round(ts - started, 3))
        out.append(pkt)
    return out


def _meant_for(message: Mapping[str, Any], sender: str, sides: Mapping[str, Any],
               registered: Optional[str]) -> Optional[str]:
    """Whom a datagram that did not arrive was for: the rendezvous, the other peer, or (a
    rendezvous reply) the peer that registered from its destination."""
    if message.get("t") == "register":
        return "rendezvous"
    if message.get("t") == "punch":
        return next((r for r in sides if r not in (sender, "rendezvous")), None)
    return registered


def _datagram(net: Network, seen: Mapping[str, Seen], host_of: Mapping[str, str], addresses: Mapping[str, str],
              ports: Mapping[str, int], role: str, to: Endpoint, arrived: Optional[tuple[str, Mapping[str, Any]]],
              receiver: Optional[str]) -> dict[str, Any]:
    host = host_of[role]
    rx_host = host_of.get(receiver or "")
    if arrived is not None and arrived[0] == role:  # its own host candidate (both homes alike): never left
        summary = f"udp {addresses[host]}:{ports[role]} -> {to.show()}"
        return {"from": host, "sent": summary, "answer": False, "hops": [], "end": host, "outcome": "delivered",
                "received": summary, "reason": "", "observed": "peer trace",
                "note": "its own address: the datagram never left its network"}
    result = {"proto": "udp", "src": host, "dst": to.addr, "dport": to.port, "sport": ports[role],
              "delivered": arrived is not None, "seen": arrived[1].get("from") if arrived else None,
              "receiver": rx_host, "replied": None, "detail": "" if arrived else "its receiver's trace has no such datagram"}
    rx_addr = addresses.get(rx_host) if rx_host else None
    pkt = observed_walk(net, seen, result, addresses[host], rx_addr, ports.get(receiver or "", 0))[0]
    pkt["observed"] = "peer trace and gateway records"
    return pkt


# --- every backend: who opened what, and a diagram that fits ------------------------------------

def _sessions(rows: Sequence[Mapping[str, Any]], node: str) -> set[tuple[str, str, str]]:
    return {(node, str(r.get("internal")), str(s.get("remote"))) for r in rows
            for s in (r.get("sessions") or []) if isinstance(s, Mapping)}


def mark_openings(messages: list[dict[str, Any]], before: Mapping[str, Sequence[Mapping[str, Any]]],
                  after: Mapping[str, Sequence[Mapping[str, Any]]], filtering: Mapping[str, str]) -> None:
    """Mark (in place, ``hop["opens"]``) each datagram's hop that opened its NAT (see the module docstring)."""
    had = {k for gw, rows in before.items() for k in _sessions(rows, gw)}
    has = {k for gw, rows in after.items() for k in _sessions(rows, gw)}
    opened: set[tuple[str, str, str]] = set()
    by_address: set[tuple[str, str, str]] = set()
    for msg in messages:
        for hop in msg.get("hops", ()):
            if hop.get("side") != "inside" or hop.get("verdict") not in ("forward", "hairpin"):
                continue
            flow, out = flow_of_summary(hop.get("in")), flow_of_summary(hop.get("out"))
            if flow is None or out is None:
                continue
            key = (hop["node"], flow.src.show(), flow.dst.show())
            created = "mapping-created" in (hop.get("events") or ())
            if key in opened or (key in had and not created) or (key not in has and not created):
                continue
            opened.add(key)
            parts = [f"mapping {flow.src.show()} -> {out.src.show()}"] if created else []
            how = filtering.get(hop["node"], "")
            if how == "address-and-port-dependent":
                parts.append(f"its filter for {flow.dst.show()}")
            elif how == "address-dependent" and (key[0], key[1], flow.dst.show(False)) not in by_address:
                by_address.add((key[0], key[1], flow.dst.show(False)))
                parts.append(f"its filter for {flow.dst.show(False)}")
            if parts:
                hop["opens"] = f"opens {hop['node']}: " + ", ".join(parts)


def _signature(msg: Mapping[str, Any]) -> tuple:
    hops = tuple((h.get("node"), h.get("verdict"), h.get("reason", ""), _bare(h.get("out"))) for h in msg.get("hops", ()))
    return (msg.get("from"), msg.get("label"), _bare(msg.get("sent")), msg.get("outcome"), msg.get("end"),
            msg.get("reason", ""), hops)


def _bare(summary: Any) -> str:
    """A packet summary without its length (repeats differ only there)."""
    return str(summary or "").split(" len=")[0]


def fold(messages: Sequence[dict[str, Any]], keep: int = KEEP, max_rows: int = MAX_ROWS) -> list[dict[str, Any]]:
    """The rows to draw: each kind of datagram ``keep`` times, then one ``fold`` row counting the rest."""
    rows: list[dict[str, Any]] = []
    shown: dict[tuple, int] = {}
    folds: dict[tuple, dict[str, Any]] = {}
    hidden = 0
    for msg in messages:
        sig = _signature(msg)
        count = shown.get(sig, 0)
        shown[sig] = count + 1
        if count < keep and len(rows) < max_rows:
            rows.append(dict(msg))
            continue
        if sig in folds:
            folds[sig]["count"] += 1
            folds[sig]["last_t"] = msg.get("t")
        elif len(rows) < max_rows:
            folds[sig] = {"fold": True, "count": 1, "from": msg.get("from"), "end": msg.get("end"),
                          "outcome": msg.get("outcome"), "reason": msg.get("reason", ""), "label": msg.get("label"),
                          "hops": msg.get("hops", []), "kind": msg.get("kind"), "t": msg.get("t"),
                          "last_t": msg.get("t")}
            rows.append(folds[sig])
        else:
            hidden += 1
    if hidden:
        rows.append({"fold": True, "count": hidden, "from": None, "end": None, "outcome": "more", "hops": [],
                     "label": f"{hidden} more datagram(s) of other kinds, not drawn", "reason": ""})
    return rows
