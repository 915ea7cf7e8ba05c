"""IP fragments (RFC 4787 section 11, REQ-14).

The first fragment (offset 0) carries the transport header, so it is translated
by its ports like any packet; the translation it got is then remembered under
(side, src, dst, proto, IP id) for ``fragments.hold`` seconds, and later
fragments of the same datagram get the same address rewrite. A later fragment
that arrives before its first is held (at most ``max_held`` at once) and sent on
when the first one comes; if it never does, it is dropped when the hold ends.

:func:`handle` works on a :class:`FragmentContext` (the table, the counters, the
policy and the timer heap) and translates first fragments with the engine's
``transport`` function, passed in: it never sees the engine.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol

from natlab.engine.counters import Counters
from natlab.engine.policy import Policy
from natlab.engine.types import Side
from natlab.engine.verdicts import Drop, DropReason, Emit, Event, EventKind, Forward, Hairpin, Verdict
from natlab.packet.checksum import checksum

FragKey = tuple  # (side, src, dst, proto, ident)

Transport = Callable[..., Verdict]
"""transport(data, ihl, total, proto, src, dst, side, now, events): translate by ports."""


class Translation:
    """How the first fragment of a datagram was translated."""

    __slots__ = ("table", "key", "addresses", "hairpin", "out_side")

    def __init__(self, table: "FragmentTable", key: FragKey, addresses: bytes, hairpin: bool,
                 out_side: Side) -> None:
        self.table = table
        self.key = key
        self.addresses = addresses
        self.hairpin = hairpin
        self.out_side = out_side

    def due(self, now: float, events: list, emits: list) -> Optional[float]:
        """The hold is over: later fragments of this datagram are no longer translated."""
        if self.table.records.get(self.key) is self:
            del self.table.records[self.key]
        return None

    def apply(self, data: bytes | bytearray) -> bytearray:
        buf = bytearray(data)
        ihl = (buf[0] & 15) << 2
        buf[12:20] = self.addresses
        buf[10:12] = b"\x00\x00"
        buf[10:12] = checksum(buf[:ihl]).to_bytes(2, "big")
        return buf


class HeldFragment:
    """A fragment that came before its first; a timer of the engine's heap."""

    __slots__ = ("table", "key", "data", "done")

    def __init__(self, table: "FragmentTable", key: FragKey, data: bytes) -> None:
        self.table = table
        self.key = key
        self.data = data
        self.done = False

    def due(self, now: float, events: list, emits: list) -> Optional[float]:
        """The first fragment never came: drop this one, saying so."""
        if self.done:
            return None
        self.done = True
        table = self.table
        table.held[self.key].remove(self)
        if not table.held[self.key]:
            del table.held[self.key]
        table.n_held -= 1
        events.append(Event(EventKind.DROPPED, now, reason=DropReason.FRAGMENT_HELD.value,
                            detail="held fragment expired: its first fragment never came"))
        return None


class FragmentTable:
    """First fragments' translations and held fragments, by (side, src, dst, proto, IP id)."""

    def __init__(self) -> None:
        self.records: dict[FragKey, Translation] = {}
        self.held: dict[FragKey, list[HeldFragment]] = {}
        self.n_held = 0

    def clear(self) -> None:
        for frags in self.held.values():
            for frag in frags:
                frag.done = True
        self.records.clear()
        self.held.clear()
        self.n_held = 0

    def release(self, key: FragKey) -> list[bytes]:
        frags = self.held.pop(key, [])
        for frag in frags:
            frag.done = True
        self.n_held -= len(frags)
        return [f.data for f in frags]


class FragmentContext(Protocol):
    """What fragment handling needs of the NAT's state."""

    frags: FragmentTable
    counters: Counters

    @property
    def policy(self) -> Policy: ...

    def schedule(self, deadline: float, item: object) -> None: ...


def handle(ctx: FragmentContext, transport: Transport, data, ihl, total, frag, ident, proto, src, dst, side,
           now, events) -> Verdict:
    """Translate a fragment: the first by its ports, later ones by the first's translation."""
    policy = ctx.policy.fragments
    counters = ctx.counters
    if not policy.translate:
        return counters.drop(DropReason.FRAGMENTS_DISABLED, events)
    table = ctx.frags
    key = (side, src, dst, proto, ident)
    if frag & 0x1FFF == 0:
        verdict = transport(data, ihl, total, proto, src, dst, side, now, events)
        if verdict.__class__ is Drop:
            return verdict
        hairpin = verdict.__class__ is Hairpin
        out_side = Side.INSIDE if (hairpin or side is Side.OUTSIDE) else Side.OUTSIDE
        record = Translation(table, key, bytes(verdict.data[12:20]), hairpin, out_side)
        table.records[key] = record
        ctx.schedule(now + policy.hold, record)
        released = tuple(Emit(out_side, bytes(record.apply(d))) for d in table.release(key))
        counters.emitted += len(released)
        return verdict._replace(emits=verdict.emits + released) if released else verdict
    record = table.records.get(key)
    if record is not None:
        if side is Side.INSIDE:
            counters.translated_out += 1
        else:
            counters.translated_in += 1
        cls = Hairpin if record.hairpin else Forward
        return cls(record.apply(data), tuple(events) if events else ())
    if not policy.out_of_order:
        return counters.drop(DropReason.NO_MAPPING, events)
    if table.n_held >= policy.max_held:
        return counters.drop(DropReason.FRAGMENT_OVERFLOW, events)
    held = HeldFragment(table, key, bytes(data))
    table.held.setdefault(key, []).append(held)
    table.n_held += 1
    ctx.schedule(now + policy.hold, held)
    return counters.drop(DropReason.FRAGMENT_HELD, events)
