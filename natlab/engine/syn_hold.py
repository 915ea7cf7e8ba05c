"""Unsolicited inbound TCP SYNs (RFC 5382 REQ-4).

A NAT MUST NOT answer an unsolicited inbound SYN for at least 6 seconds; if it
translates an outbound SYN for the same connection meanwhile (TCP simultaneous
open), the held SYN is silently dropped. Otherwise it SHOULD answer with ICMP
port unreachable (or, by policy here, a RST, or nothing). The SYN itself is
always dropped at once; only the answer waits.
"""

from __future__ import annotations

from typing import Optional

from natlab.engine.policy import SynResponse, TcpPolicy
from natlab.engine.types import Side, is_unicast
from natlab.engine.verdicts import DropReason, Emit, Event, EventKind

MAX_HELD = 1024
"""At most this many SYNs wait for an answer; more are dropped unanswered."""

SynKey = tuple[int, int, int, int]
"""(X', x', Y, y): the external endpoint the SYN came to, and its remote."""


class HeldSyn:
    """A SYN whose answer waits out ``tcp.syn_hold``; a timer of the engine's heap."""

    __slots__ = ("table", "key", "data", "cancelled")

    def __init__(self, table: "SynHold", key: SynKey, data: bytes) -> None:
        self.table = table
        self.key = key
        self.data = data
        self.cancelled = False

    def due(self, now: float, events: list, emits: list) -> Optional[float]:
        """Answer the SYN (by the policy in force now), unless cancelled meanwhile."""
        held = self.table.held
        if self.cancelled or held.get(self.key) is not self:
            return None
        del held[self.key]
        from natlab.packet import build

        answer = self.table.answer
        try:
            if answer is SynResponse.ICMP:
                emits.append(Emit(Side.OUTSIDE, build.icmp_error(self.data, src=self.key[0], type=3, code=3)))
            elif answer is SynResponse.RST:
                emits.append(Emit(Side.OUTSIDE, build.tcp_rst_for(self.data)))
        except ValueError:  # PacketError too: a segment no answer can be built for gets none
            events.append(Event(EventKind.DROPPED, now, protocol="tcp", reason=DropReason.MALFORMED.value,
                                detail="held SYN could not be answered"))
        return None


class SynHold:
    """SYNs waiting out their 6 seconds, keyed by (X', x', Y, y)."""

    def __init__(self, answer: SynResponse = SynResponse.ICMP) -> None:
        self.held: dict[SynKey, HeldSyn] = {}
        self.answer = answer
        """What a held SYN gets when its time comes (``tcp.unsolicited_syn`` as it is then)."""

    def __bool__(self) -> bool:
        return bool(self.held)

    def __len__(self) -> int:
        return len(self.held)

    def hold(self, policy: TcpPolicy, data: bytes | bytearray, ext_addr: int, ext_port: int,
             y_addr: int, y_port: int) -> Optional[HeldSyn]:
        """Hold an unsolicited SYN for its answer; the new timer to schedule ``policy.syn_hold``
        seconds from now, or None when it gets no answer (policy ``drop``, already held, too
        many held, or a broadcast or multicast source, RFC 1812 4.3.2.7)."""
        key = (ext_addr, ext_port, y_addr, y_port)
        if policy.unsolicited_syn is SynResponse.DROP or key in self.held or len(self.held) >= MAX_HELD \
                or not is_unicast(y_addr):
            return None
        made = HeldSyn(self, key, bytes(data))
        self.held[key] = made
        return made

    def cancel(self, ext_addr: int, ext_port: int, y_addr: int, y_port: int) -> None:
        """An outbound SYN for this connection was translated: drop the held one silently."""
        held = self.held.pop((ext_addr, ext_port, y_addr, y_port), None)
        if held is not None:
            held.cancelled = True

    def clear(self) -> None:
        for held in self.held.values():
            held.cancelled = True
        self.held.clear()
