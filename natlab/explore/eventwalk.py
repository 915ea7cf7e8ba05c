"""A probe's walk told from what the gateways recorded, where no tracer can watch (netns, Docker).

Theory of operation
-------------------
On a real lab the workbench cannot see packets between the gateways. What it
can see, before and after one probe, is each gateway's record: its events (a
``mapping-created`` names the internal and the external endpoint: the rewrite;
a ``dropped``/``filtered`` carries the packet's summary and the reason), its
mapping table (each row counts the packets it translated out and in) and its
packet counters (packets queued from either side). :func:`observed_walk` is a
pure function from those two snapshots (:class:`Seen`) to the same packet list
the memory tracer gives (:func:`natnet.explore.walk.packets`): one entry per
direction, the probe and, with ``reply``, the answer's way back.

Each leg follows the flow (a :class:`Flow`, RFC 4787 terms) hop by hop:

- the sender's own NATs, nearest first (outbound: the internal endpoint is
  looked up), then the NAT owning the destination address (inbound: the
  external endpoint is looked up), then whoever owns the rewritten
  destination, until a host owns it. A NAT that is both on the sender's way
  and owns the destination hairpins (RFC 4787 REQ-9).
- At each NAT the evidence is read in this order: a drop event matching the
  flow (verdict ``drop`` with the reason), a ``mapping-created`` event for the
  internal endpoint, a mapping row whose packet count grew (verdict
  ``forward``, the packet after the NAT from the row). Which one was used is
  the hop's ``how``.
- Without evidence the hop says so: ``unseen`` when the gateway's counter for
  that side did not move (the packet never reached it), ``unobserved`` when it
  handled packets but none can be matched to this flow. Nothing is guessed: an
  address that is not known stays unknown, and the next hop matches on what is.

The receiver's own report (the source it saw) ends a delivered leg; a leg that
was not delivered ends at the drop that was recorded, or as ``lost`` with the
probe's own explanation when no gateway recorded one. For TCP a leg stands for
the whole connection one way (the rows count every segment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional, Sequence

__all__ = ["Endpoint", "Flow", "Network", "Seen", "flow_of_summary", "observed_walk"]

_L4 = re.compile(r"^(udp|tcp) ([\d.]+):(\d+) -> ([\d.]+):(\d+)")
_ICMP = re.compile(r"^icmp (echo-request|echo-reply) id=(\d+)\S* (?:seq=\d+ )?([\d.]+) -> ([\d.]+)")
DROPS = ("dropped", "filtered")


@dataclass(frozen=True)
class Endpoint:
    """An address and a port (ICMP: the echo identifier); either may be unknown (None)."""

    addr: Optional[str]
    port: Optional[int]

    @classmethod
    def parse(cls, text: Any) -> Optional["Endpoint"]:
        """``"ip:port"`` as the control socket writes it; None for anything else."""
        if not isinstance(text, str) or ":" not in text:
            return None
        addr, _, port = text.rpartition(":")
        return cls(addr, int(port)) if port.isdigit() else None

    def fits(self, other: Optional["Endpoint"]) -> bool:
        """The same endpoint, as far as both are known."""
        if other is None:
            return False
        return (None in (self.addr, other.addr) or self.addr == other.addr) and \
               (None in (self.port, other.port) or self.port == other.port)

    def show(self, with_port: bool = True) -> str:
        addr = self.addr or "?"
        return f"{addr}:{'?' if self.port is None else self.port}" if with_port else addr


@dataclass(frozen=True)
class Flow:
    """One direction of a probe: ``src`` -> ``dst``.

    ICMP echo keeps its identifier where the NAT keys on it: a request's in ``src.port``
    (the internal endpoint, RFC 5508 REQ-1), a reply's in ``dst.port``; the other is None.
    """

    proto: str
    src: Endpoint
    dst: Endpoint
    kind: str = ""
    """ICMP only: ``echo-request`` or ``echo-reply``."""

    def summary(self) -> str:
        """As :func:`natnet.packet.headers.summarize` writes a packet (without its length)."""
        if self.proto == "icmp":
            ident = self.src.port if self.kind == "echo-request" else self.dst.port
            return (f"icmp {self.kind} id={'?' if ident is None else ident} "
                    f"{self.src.show(False)} -> {self.dst.show(False)}")
        return f"{self.proto} {self.src.show()} -> {self.dst.show()}"

    def fits(self, other: Optional["Flow"]) -> bool:
        return other is not None and other.proto == self.proto and self.src.fits(other.src) \
            and self.dst.fits(other.dst)


def flow_of_summary(text: Any) -> Optional[Flow]:
    """The flow a packet summary in an event describes (udp, tcp, ICMP echo), else None."""
    if not isinstance(text, str):
        return None
    m = _L4.match(text)
    if m:
        return Flow(m[1], Endpoint(m[2], int(m[3])), Endpoint(m[4], int(m[5])))
    m = _ICMP.match(text)
    if m:
        ident = int(m[2])
        src_port, dst_port = (ident, None) if m[1] == "echo-request" else (None, ident)
        return Flow("icmp", Endpoint(m[3], src_port), Endpoint(m[4], dst_port), m[1])
    return None


@dataclass(frozen=True)
class Seen:
    """What one gateway recorded while one probe ran."""

    name: str
    events: tuple[dict[str, Any], ...] = ()
    """Its events recorded during the probe."""
    before: tuple[dict[str, Any], ...] = ()
    after: tuple[dict[str, Any], ...] = ()
    """Its mapping rows before and after."""
    from_inside: Optional[int] = None
    from_outside: Optional[int] = None
    """Packets it queued from each side during the probe (None: its counters did not say)."""

    def grew(self, direction: str) -> list[tuple[dict[str, Any], int]]:
        """Rows whose ``packets_out``/``packets_in`` grew, with by how much (a new row: all of it)."""
        old = {(r["protocol"], r["internal"], r["external"]): r for r in self.before}
        out = []
        for row in self.after:
            was = old.get((row["protocol"], row["internal"], row["external"]))
            delta = int(row.get(direction, 0)) - (int(was.get(direction, 0)) if was else 0)
            if delta > 0:
                out.append((row, delta))
        return out


@dataclass(frozen=True)
class _Hop:
    node: str
    side: str
    before: Flow
    verdict: str
    after: Optional[Flow] = None
    reason: str = ""
    events: tuple[str, ...] = ()
    how: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": "nat", "node": self.node, "side": self.side, "in": self.before.summary(),
                               "verdict": self.verdict, "events": list(self.events), "how": self.how}
        if self.after is not None:
            out["out"] = self.after.summary()
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Network:
    """Who owns which address, and each node's NATs towards the internet (nearest first)."""

    owners: Mapping[str, str]
    """Address -> host, or gateway (its pool)."""
    chains: Mapping[str, Sequence[str]]
    """Host or gateway -> the NATs its packets to the internet cross, nearest first."""
    gateways: frozenset[str] = field(default_factory=frozenset)


def _remote_fits(remote: Any, dst: Endpoint) -> bool:
    """A mapping's ``remote`` (``*``, ``ip`` or ``ip:port``, as the table writes it) admits ``dst``."""
    if not isinstance(remote, str) or remote == "*" or dst.addr is None:
        return True
    ep = Endpoint.parse(remote)
    if ep is None:
        return remote == dst.addr
    return ep.addr == dst.addr and (dst.port is None or ep.port in (0, dst.port))


def _drop(seen: Seen, flow: Flow, side: str) -> Optional[dict[str, Any]]:
    for event in seen.events:
        if event.get("kind") in DROPS and event.get("side", side) == side \
                and flow.fits(flow_of_summary(event.get("packet"))):
            return event
    return None


def _told(event: dict[str, Any]) -> str:
    return f"event #{event.get('seq')} {event.get('kind')} ({event.get('reason', '')})"


def _outbound(seen: Seen, flow: Flow) -> tuple[str, Optional[Endpoint], str, tuple[str, ...], str]:
    """At a NAT from its inside: (verdict, new source, reason, event kinds, how)."""
    dropped = _drop(seen, flow, "inside")
    if dropped is not None:
        return "drop", None, str(dropped.get("reason", "")), (dropped["kind"],), _told(dropped)
    for event in seen.events:
        if event.get("kind") == "mapping-created" and event.get("protocol") == flow.proto \
                and flow.src.fits(Endpoint.parse(event.get("internal"))) \
                and _remote_fits(event.get("remote"), flow.dst):
            return ("forward", Endpoint.parse(event.get("external")), "", ("mapping-created",),
                    f"event #{event.get('seq')} mapping-created {event.get('internal')} -> {event.get('external')}")
    for row, delta in seen.grew("packets_out"):
        if row["protocol"] == flow.proto and flow.src.fits(Endpoint.parse(row["internal"])) \
                and _remote_fits(row.get("remote"), flow.dst):
            return ("forward", Endpoint.parse(row["external"]), "", (),
                    f"mapping {row['internal']} -> {row['external']} counted {delta} more packet(s) out")
    return _nothing(seen, "inside")


def _inbound(seen: Seen, flow: Flow) -> tuple[str, Optional[Endpoint], str, tuple[str, ...], str]:
    """At a NAT from its outside: (verdict, new destination, reason, event kinds, how)."""
    dropped = _drop(seen, flow, "outside")
    if dropped is not None:
        return "drop", None, str(dropped.get("reason", "")), (dropped["kind"],), _told(dropped)
    return _inbound_row(seen, flow) or _nothing(seen, "outside")


def _inbound_row(seen: Seen, flow: Flow) -> Optional[tuple[str, Optional[Endpoint], str, tuple[str, ...], str]]:
    for row, delta in seen.grew("packets_in"):
        if row["protocol"] == flow.proto and flow.dst.fits(Endpoint.parse(row["external"])):
            return ("forward", Endpoint.parse(row["internal"]), "", (),
                    f"mapping {row['internal']} <- {row['external']} counted {delta} more packet(s) in")
    return None


def _nothing(seen: Seen, side: str) -> tuple[str, None, str, tuple[str, ...], str]:
    handled = seen.from_inside if side == "inside" else seen.from_outside
    if handled == 0:
        return "unseen", None, "", (), f"{seen.name} queued no packet from its {side} during the probe"
    count = "packets" if handled is None else f"{handled} packet(s)"
    return ("unobserved", None, "", (),
            f"{seen.name} handled {count} from its {side} during the probe, but no event and no mapping row "
            "can be matched to this flow")


def _route(net: Network, sender: str, dst_addr: Optional[str]) -> tuple[list[str], Optional[str]]:
    """The sender's NATs the packet leaves through, and the node owning the destination."""
    target = net.owners.get(dst_addr or "")
    up = list(net.chains.get(sender, ()))
    if target is None:
        return up, None
    if target in net.gateways and target in up:  # behind the NAT it sends to: a hairpin there
        return up[:up.index(target)], target
    theirs = ([target] if target in net.gateways else []) + list(net.chains.get(target, ()))
    while up and theirs and up[-1] == theirs[-1]:
        up.pop()
        theirs.pop()
    return up, target


def _leg(net: Network, seen: Mapping[str, Seen], sender: str, flow: Flow) -> tuple[list[_Hop], Flow, Optional[str]]:
    """Hops of one direction; the flow as it leaves the last one; where it was dropped (or None)."""
    hops: list[_Hop] = []
    up, target = _route(net, sender, flow.dst.addr)
    for gw in up:
        if gw not in seen:
            break
        verdict, src, reason, kinds, how = _outbound(seen[gw], flow)
        after = replace(flow, src=src) if src is not None else None
        hops.append(_Hop(gw, "inside", flow, verdict, after, reason, kinds, how))
        if verdict == "drop":
            return hops, flow, gw
        flow = after if after is not None else replace(flow, src=Endpoint(None, None))
    for _ in range(len(net.gateways) + 1):
        if target not in net.gateways or target not in seen:
            break
        hairpin = target in net.chains.get(sender, ())
        verdict, dst, reason, kinds, how = (_hairpin if hairpin else _inbound)(seen[target], flow)
        after = replace(flow, dst=dst) if dst is not None else None
        if hairpin and verdict == "forward":
            verdict, after = "hairpin", replace(after, src=_hairpin_source(seen[target], flow))
        hops.append(_Hop(target, "inside" if hairpin else "outside", flow, verdict, after, reason, kinds, how))
        if verdict == "drop":
            return hops, flow, target
        if after is None:
            break
        flow, target = after, net.owners.get(after.dst.addr or "")
    return hops, flow, None


def _hairpin(seen: Seen, flow: Flow) -> tuple[str, Optional[Endpoint], str, tuple[str, ...], str]:
    """Sent from the inside to one of the NAT's own external endpoints (RFC 4787 REQ-9)."""
    dropped = _drop(seen, flow, "inside")
    if dropped is not None:
        return "drop", None, str(dropped.get("reason", "")), (dropped["kind"],), _told(dropped)
    return _inbound_row(seen, flow) or _nothing(seen, "inside")


def _hairpin_source(seen: Seen, flow: Flow) -> Endpoint:
    """The sender's external endpoint, where its mapping shows it; else unknown."""
    verdict, src, *_ = _outbound(seen, flow)
    return src if verdict == "forward" and src is not None else Endpoint(None, None)


def _packet(sender: str, flow: Flow, hops: list[_Hop], answer: bool) -> dict[str, Any]:
    return {"from": sender, "sent": flow.summary(), "answer": answer, "hops": [h.to_dict() for h in hops],
            "end": None, "outcome": "lost", "reason": "", "observed": "gateway records"}


def _end(pkt: dict[str, Any], dropped_at: Optional[str], hops: list[_Hop], arrived: bool, at: Optional[str],
         received: Optional[Flow], why: str) -> dict[str, Any]:
    if arrived:
        pkt.update(end=at, outcome="delivered", received=received.summary() if received else "")
    elif dropped_at is not None:
        pkt.update(end=dropped_at, outcome="dropped", reason=hops[-1].reason)
    else:
        pkt.update(end=at, outcome="lost", reason=(why or "not delivered") + "; no gateway on the way recorded a drop")
    return pkt


def observed_walk(net: Network, seen: Mapping[str, Seen], result: Mapping[str, Any],
                  src_addr: str, receiver_addr: Optional[str], listen: int) -> list[dict[str, Any]]:
    """The probe's packets (and the answer's) as far as ``seen`` shows them; see the module docstring.

    ``result`` is the probe result as the page gets it (``result_dict``); ``src_addr`` the
    sender's address, ``receiver_addr``/``listen`` where the receiver listens (None: nobody).
    """
    proto, sport, dport = result["proto"], result["sport"], result["dport"]
    icmp = proto == "icmp"
    flow = Flow(proto, Endpoint(src_addr, sport), Endpoint(result["dst"], None if icmp else dport),
                "echo-request" if icmp else "")
    hops, last, dropped_at = _leg(net, seen, result["src"], flow)
    seen_src = Endpoint.parse(result.get("seen")) if not icmp else Endpoint(result.get("seen"), last.src.port)
    got = None
    if result["delivered"] and receiver_addr is not None:
        to = Endpoint(receiver_addr, last.dst.port if icmp else listen)
        got = Flow(proto, seen_src or last.src, to, flow.kind)
    out = [_end(_packet(result["src"], flow, hops, False), dropped_at, hops, bool(result["delivered"]),
                result.get("receiver"), got, result.get("detail", ""))]
    if result.get("replied") is None or not result["delivered"] or got is None:
        return out
    back = Flow(proto, got.dst, got.src, "echo-reply" if icmp else "")
    hops, last, dropped_at = _leg(net, seen, result["receiver"], back)
    home = Endpoint(src_addr, sport)
    reply_from = Endpoint.parse(result.get("reply_from")) if not icmp else Endpoint(result.get("reply_from"), None)
    received = Flow(proto, reply_from or last.src, home, back.kind) if result["replied"] else None
    out.append(_end(_packet(result["receiver"], back, hops, True), dropped_at, hops, bool(result["replied"]),
                    result["src"], received, result.get("detail", "")))
    return out
