"""Engine counters: mappings created/active/expired, sessions, packets translated, drops by reason."""

from __future__ import annotations

from typing import Optional, Sequence

from natlab.engine.verdicts import Drop, DropReason, Event


class Counters:
    """Plain mutable counters; the engine bumps them, ``snapshot()`` reports them.

    Attribute access (not a dict of strings) keeps the per-packet cost low.
    """

    __slots__ = (
        "mappings_created",
        "mappings_expired",
        "mappings_evicted",
        "mappings_active",
        "sessions_active",
        "parity_fallbacks",
        "answered",
        "blocks_released",
        "translated_out",
        "translated_in",
        "hairpinned",
        "emitted",
        "drops",
    )

    def __init__(self) -> None:
        self.mappings_created = 0
        self.mappings_expired = 0
        self.mappings_evicted = 0
        self.mappings_active = 0
        self.sessions_active = 0
        self.parity_fallbacks = 0
        """New mappings whose port could not keep the internal port's parity (REQ-4)."""
        self.answered = 0
        """Echo requests to a pool address the NAT answered itself."""
        self.blocks_released = 0
        """CGN port blocks given back after their last mapping ended."""
        self.translated_out = 0
        self.translated_in = 0
        self.hairpinned = 0
        self.emitted = 0
        self.drops: dict[DropReason, int] = {reason: 0 for reason in DropReason}

    def drop(self, reason: DropReason, events: Optional[Sequence[Event]] = None) -> Drop:
        """A counted :class:`Drop` for ``reason`` carrying ``events``: every drop has a
        reason and a counter, so every module that drops a packet drops it here."""
        self.drops[reason] += 1
        return Drop(reason, tuple(events) if events else ())

    def snapshot(self) -> dict[str, object]:
        """Counters as plain data (for JSON, tables, the control socket)."""
        return {
            "mappings_created": self.mappings_created,
            "mappings_active": self.mappings_active,
            "mappings_expired": self.mappings_expired,
            "mappings_evicted": self.mappings_evicted,
            "sessions_active": self.sessions_active,
            "parity_fallbacks": self.parity_fallbacks,
            "blocks_released": self.blocks_released,
            "answered": self.answered,
            "translated_out": self.translated_out,
            "translated_in": self.translated_in,
            "hairpinned": self.hairpinned,
            "emitted": self.emitted,
            "drops": {reason.value: n for reason, n in self.drops.items()},
            "dropped": sum(self.drops.values()),
        }
