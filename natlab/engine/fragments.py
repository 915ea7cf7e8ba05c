"""IP fragments (RFC 4787 section 11, REQ-14).

The first fragment (offset 0) carries the transport header, so it is translated
by its ports like any packet; the translation it got is then remembered under
(side, src, dst, proto, IP id) for ``fragments.hold`` seconds, and later
fragments of the same datagram get the same address rewrite. A later fragment
that arrives before its first is held (at most ``max_held`` at once) and sent on
when the first one comes; if it never does, it is dropped when the hold ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from natlab.engine.types import Side
from natlab.engine.verdicts import Drop, DropReason, Emit, Event, EventKind, Forward, Hairpin, Verdict
from natlab.packet.checksum import checksum

if TYPE_CHECKING:
    from natlab.engine.nat import Engine

FragKey = tuple  # (side, src, dst, proto, ident)


class Translation:
    """How the first fragment of a datagram was translated."""

    __slots__ = ("key", "addresses", "hairpin", "out_side")

    def __init__(self, key: FragKey, addresses: bytes, hairpin: bool, out_side: Side) -> None:
        self.key = key
        self.addresses = addresses
        self.hairpin = hairpin
        self.out_side = out_side

    def due(self, engine: "Engine", now: float, events: list, emits: list) -> None:
        if engine.frags.records.get(self.key) is self:
            del engine.frags.records[self.key]

    def apply(self, data: bytes | bytearray) -> bytearray:
        buf = bytearray(data)
        ihl = (buf[0] & 15) << 2
        buf[12:20] = self.addresses
        buf[10:12] = b"\x00\x00"
        buf[10:12] = checksum(buf[:ihl]).to_bytes(2, "big")
        return buf


class HeldFragment:
    __slots__ = ("key", "data", "done")

    def __init__(self, key: FragKey, data: bytes) -> None:
        self.key = key
        self.data = data
        self.done = False

    def due(self, engine: "Engine", now: float, events: list, emits: list) -> None:
        if self.done:
            return
        self.done = True
        table = engine.frags
        table.held[self.key].remove(self)
        if not table.held[self.key]:
            del table.held[self.key]
        table.n_held -= 1
        events.append(Event(EventKind.DROPPED, now, reason=DropReason.FRAGMENT_HELD.value,
                            detail="held fragment expired: its first fragment never came"))


class FragmentTable:
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


def handle(engine: "Engine", data, ihl, total, frag, ident, proto, src, dst, side, now, events) -> Verdict:
    """Translate a fragment: the first by its ports, later ones by the first's translation."""
    policy = engine.policy.fragments
    if not policy.translate:
        return engine._drop(DropReason.FRAGMENTS_DISABLED, events)
    table = engine.frags
    key = (side, src, dst, proto, ident)
    if frag & 0x1FFF == 0:
        verdict = engine._transport(data, ihl, total, proto, src, dst, side, now, events)
        if verdict.__class__ is Drop:
            return verdict
        hairpin = verdict.__class__ is Hairpin
        out_side = Side.INSIDE if (hairpin or side is Side.OUTSIDE) else Side.OUTSIDE
        record = Translation(key, bytes(verdict.data[12:20]), hairpin, out_side)
        table.records[key] = record
        engine.schedule(now + policy.hold, record)
        released = tuple(Emit(out_side, bytes(record.apply(d))) for d in table.release(key))
        engine.counters.emitted += len(released)
        return verdict._replace(emits=verdict.emits + released) if released else verdict
    record = table.records.get(key)
    if record is not None:
        if side is Side.INSIDE:
            engine.counters.translated_out += 1
        else:
            engine.counters.translated_in += 1
        cls = Hairpin if record.hairpin else Forward
        return cls(record.apply(data), tuple(events) if events else ())
    if not policy.out_of_order:
        return engine._drop(DropReason.NO_MAPPING, events)
    if table.n_held >= policy.max_held:
        return engine._drop(DropReason.FRAGMENT_OVERFLOW, events)
    held = HeldFragment(key, bytes(data))
    table.held.setdefault(key, []).append(held)
    table.n_held += 1
    engine.schedule(now + policy.hold, held)
    return engine._drop(DropReason.FRAGMENT_HELD, events)
