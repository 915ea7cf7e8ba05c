"""The NAT engine: bytes, a side and ``now`` in; a verdict and events out.

(Contract stub; the implementation follows.)
"""

from __future__ import annotations

import random
from typing import Sequence

from natlab.engine.counters import Counters
from natlab.engine.policy import Policy
from natlab.engine.types import AddressLike, Side
from natlab.engine.verdicts import Tick, Verdict
from natlab.engine.views import MappingView


class Engine:
    """A sans-I/O NAT.

    ``Engine(policy, pool, rng)``: ``pool`` is one or more external IPv4
    addresses; ``rng`` a seeded ``random.Random`` (same seed, same mappings).

    - ``process(data, side, now) -> Forward | Hairpin | Drop``: ``data`` is one
      raw IPv4 packet that arrived on ``side``. Never raises on bad packets.
    - ``expire(now) -> Tick``: drop what timed out by ``now``; answers held SYNs.
    - ``next_deadline() -> float | None``: when ``expire`` next has work.
    - ``mappings(now) -> tuple[MappingView, ...]``; ``counters`` (``.snapshot()``).
    - ``reconfigure(policy, now)``, ``set_pool(pool, now)``, ``flush(now)``
      (a reboot: every dynamic mapping gone) return a ``Tick`` too.
    - ``refresh_events``: also emit an event per mapping refresh (off: costly).
    """

    def __init__(
        self,
        policy: Policy,
        pool: Sequence[AddressLike],
        rng: random.Random,
        *,
        refresh_events: bool = False,
    ) -> None:
        self.counters = Counters()
        raise NotImplementedError

    def process(self, data: bytes | bytearray, side: Side, now: float) -> Verdict:
        raise NotImplementedError

    def expire(self, now: float) -> Tick:
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        raise NotImplementedError

    def mappings(self, now: float | None = None) -> tuple[MappingView, ...]:
        raise NotImplementedError
