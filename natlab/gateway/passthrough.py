"""A do-nothing engine with the Engine's methods: every packet goes through unchanged.

Selected with ``NATLAB_GATEWAY_ENGINE=passthrough`` (a plain router, for
debugging a lab's plumbing and for testing the gateway process on its own).
The real NAT engine is the default.
"""

from __future__ import annotations

from typing import Any, Sequence

from natlab.engine.counters import Counters
from natlab.engine.types import Side
from natlab.engine.verdicts import Forward, Tick, Verdict
from natlab.engine.views import MappingView


class PassthroughEngine:
    def __init__(self, policy: Any, pool: Sequence[str], rng: Any, *, refresh_events: bool = False) -> None:
        self.policy = policy
        self.pool = tuple(pool)
        self.counters = Counters()

    def process(self, data: bytes | bytearray, side: Side, now: float) -> Verdict:
        if side is Side.INSIDE:
            self.counters.translated_out += 1
        else:
            self.counters.translated_in += 1
        return Forward(data)

    def expire(self, now: float) -> Tick:
        return Tick()

    def next_deadline(self) -> float | None:
        return None

    def mappings(self, now: float | None = None) -> tuple[MappingView, ...]:
        return ()

    def reconfigure(self, policy: Any, now: float) -> Tick:
        self.policy = policy
        return Tick()

    def set_pool(self, pool: Sequence[str], now: float) -> Tick:
        self.pool = tuple(pool)
        return Tick()

    def flush(self, now: float) -> Tick:
        return Tick()
