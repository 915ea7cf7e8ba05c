"""Mappings and sessions: the records the NAT's state is made of, and TCP's states.

Theory of operation
-------------------
A *mapping* binds an internal endpoint X:x to an external endpoint X':x'
(RFC 4787 section 4). Its *sessions* are the remote endpoints Y:y it has carried
traffic with; they are what filtering consults (section 5) and what times out
(section 4.3, RFC 5382 REQ-5): each session has its own idle timer, and a mapping
lives as long as any of its sessions does. Linux conntrack ages the same way.

These are mutable records with ``__slots__`` (one is touched per packet); the
indexes over them and every change to them belong to
:class:`natlab.engine.state.NatState`.
"""

from __future__ import annotations

from enum import Enum
from typing import Optional

from natlab.engine.checksum_deltas import mapping_deltas
from natlab.engine.types import Endpoint, FlowKey, proto_label, to_str


class TcpState(str, Enum):
    """RFC 5382 session states, coarse as the RFC's two timers need."""

    SYN_SENT = "syn-sent"
    SYN_RECEIVED = "syn-received"
    ESTABLISHED = "established"
    FIN_WAIT = "fin-wait"
    CLOSING = "closing"
    CLOSED = "closed"


SYN, RST, FIN, ACK = 0x02, 0x04, 0x01, 0x10


_ENDED = (TcpState.CLOSING, TcpState.CLOSED)


def tcp_next_state(state: Optional[TcpState], flags: int, outbound: bool, fin_out: bool, fin_in: bool) -> TcpState:
    """The session's state after a packet with ``flags`` (RFC 5382 section 5).

    SYNs both ways make a connection established; a FIN moves it to closing
    (transitory timer), FINs both ways or a RST to closed. A SYN (without ACK)
    after FINs both ways or a RST reuses the 5-tuple for a new connection, as
    Linux conntrack does from TIME_WAIT or CLOSE.
    """
    if flags & RST:
        return TcpState.CLOSED
    if flags & SYN:
        if state is None or state is TcpState.CLOSED or (state is TcpState.CLOSING and not flags & ACK):
            return TcpState.SYN_SENT if outbound else TcpState.SYN_RECEIVED
        if (state is TcpState.SYN_SENT and not outbound) or (state is TcpState.SYN_RECEIVED and outbound):
            return TcpState.ESTABLISHED
        return state
    if state is None:
        return TcpState.SYN_SENT if outbound else TcpState.SYN_RECEIVED
    if flags & FIN:
        return TcpState.CLOSING if (fin_out and fin_in) else TcpState.FIN_WAIT
    return state


def restarts(before: Optional[TcpState], after: TcpState) -> bool:
    """Whether a packet turned an ended connection into a new one (RFC 5382 REQ-5 timers)."""
    return before in _ENDED and after in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED)


class Mapping:
    """One external endpoint X':x' serving one internal endpoint X:x."""

    __slots__ = (
        "proto", "internal", "external", "key", "remote", "kind", "created",
        "sessions", "addr_refs", "packets_out", "packets_in",
        "ext_addr_bytes", "int_addr_bytes", "ip_out", "l4_out", "ip_in", "l4_in",
    )

    def __init__(
        self,
        proto: int,
        internal: Endpoint,
        external: Endpoint,
        key: FlowKey,
        now: float,
        kind: str = "dynamic",
    ) -> None:
        self.proto = proto
        self.internal = internal
        self.external = external
        self.key = key
        """The flow trimmed by the mapping's endpoint dependency (``Dependency.key``)."""
        self.remote = key.remote_label
        self.kind = kind
        self.created = now
        self.sessions: dict[tuple[int, int], Session] = {}
        self.addr_refs: dict[int, int] = {}
        self.packets_out = 0
        self.packets_in = 0
        self.ext_addr_bytes = external.addr.to_bytes(4, "big")
        self.int_addr_bytes = internal.addr.to_bytes(4, "big")
        self.ip_out, self.l4_out, self.ip_in, self.l4_in = mapping_deltas(proto, internal, external)

    @property
    def expires(self) -> Optional[float]:
        if self.kind != "dynamic":
            return None
        return max((s.expires for s in self.sessions.values()), default=self.created)

    @property
    def protocol(self) -> str:
        """"udp", "tcp" or "icmp" (the first word of :meth:`describe`)."""
        return proto_label(self.proto)

    def describe(self) -> str:
        return f"{proto_label(self.proto)} {self.internal} -> {self.external}"

    def remote_label(self, remote: tuple[int, int]) -> str:
        return f"{to_str(remote[0])}:{remote[1]}"


class Session:
    """Traffic between a mapping and one remote endpoint: the unit of filtering and aging."""

    __slots__ = ("mapping", "remote", "expires", "armed", "started", "seen", "state", "fin_out", "fin_in",
                 "dead", "flow")

    def __init__(self, mapping: Mapping, remote: tuple[int, int], flow: FlowKey, expires: float,
                 started: float = 0.0) -> None:
        self.mapping = mapping
        self.remote = remote
        self.flow = flow
        self.expires = expires
        self.armed = float("-inf")
        """The earliest deadline the engine's heap holds for this session."""
        self.started = started
        """When the session's first packet passed (for ``timeouts.udp_stream_after``)."""
        self.seen = 0
        """Directions seen: 1 outbound, 2 inbound, 3 both (a "replied" session)."""
        self.state: Optional[TcpState] = None
        self.fin_out = False
        self.fin_in = False
        self.dead = False

    def state_label(self) -> str:
        if self.state is not None:
            return self.state.value
        return "replied" if self.seen == 3 else "unreplied"


def decrement(counts: dict, key: object) -> None:
    """Count one fewer of ``key``, forgetting it at zero."""
    left = counts.get(key, 1) - 1
    if left:
        counts[key] = left
    else:
        counts.pop(key, None)
