"""Unsolicited inbound TCP SYNs (RFC 5382 REQ-4).

A NAT MUST NOT answer an unsolicited inbound SYN for at least 6 seconds; if it
translates an outbound SYN for the same connection meanwhile (TCP simultaneous
open), the held SYN is silently dropped. Otherwise it SHOULD answer with ICMP
port unreachable (or, by policy here, a RST, or nothing). The SYN itself is
always dropped at once; only the answer waits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from natlab.engine.policy import SynResponse
from natlab.engine.types import Side, is_unicast
from natlab.engine.verdicts import Drop, DropReason, Emit, Event, EventKind

if TYPE_CHECKING:
    from natlab.engine.nat import Engine

MAX_HELD = 1024
"""At most this many SYNs wait for an answer; more are dropped unanswered."""


class HeldSyn:
    __slots__ = ("key", "data", "cancelled")

    def __init__(self, key: tuple[int, int, int, int], data: bytes) -> None:
        self.key = key
        self.data = data
        self.cancelled = False

    def due(self, engine: "Engine", now: float, events: list, emits: list) -> None:
        if self.cancelled or engine.syns.held.get(self.key) is not self:
            return
        del engine.syns.held[self.key]
        from natlab.packet import build

        answer = engine.policy.tcp.unsolicited_syn
        try:
            if answer is SynResponse.ICMP:
                emits.append(Emit(Side.OUTSIDE, build.icmp_error(self.data, src=self.key[0], type=3, code=3)))
            elif answer is SynResponse.RST:
                emits.append(Emit(Side.OUTSIDE, build.tcp_rst_for(self.data)))
        except ValueError:  # PacketError too: a segment no answer can be built for gets none
            events.append(Event(EventKind.DROPPED, now, protocol="tcp", reason=DropReason.MALFORMED.value,
                                detail="held SYN could not be answered"))


class SynHold:
    """SYNs waiting out their 6 seconds, keyed by (X', x', Y, y)."""

    def __init__(self) -> None:
        self.held: dict[tuple[int, int, int, int], HeldSyn] = {}

    def __bool__(self) -> bool:
        return bool(self.held)

    def cancel(self, ext_addr: int, ext_port: int, y_addr: int, y_port: int) -> None:
        """An outbound SYN for this connection was translated: drop the held one silently."""
        held = self.held.pop((ext_addr, ext_port, y_addr, y_port), None)
        if held is not None:
            held.cancelled = True

    def clear(self) -> None:
        for held in self.held.values():
            held.cancelled = True
        self.held.clear()


def unsolicited(engine: "Engine", data, ext_addr, ext_port, y_addr, y_port, now, events, reason: DropReason) -> Drop:
    """Drop an unsolicited SYN now; schedule its answer for ``syn_hold`` seconds later."""
    policy = engine.policy.tcp
    key = (ext_addr, ext_port, y_addr, y_port)
    holds = engine.syns.held
    if policy.unsolicited_syn is not SynResponse.DROP and key not in holds and len(holds) < MAX_HELD \
            and is_unicast(y_addr):  # never answer to a broadcast or multicast source
        held = HeldSyn(key, bytes(data))
        holds[key] = held
        engine.schedule(now + policy.syn_hold, held)
    return engine._drop(reason, events)
