"""What a datapath does with a packet the gateway has seen: accept it (maybe rewritten) or drop it.

Neutral on purpose: the sans-I/O :class:`~natlab.gateway.service.Gateway` returns
an :class:`Outcome`, and each datapath turns it into its own verdict (NFQUEUE's
``accept``/``set_payload``/``drop``, a routing step in memory, a DPDK tx burst).
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple, Optional

__all__ = ["Action", "Outcome", "DROP"]


class Action(str, Enum):
    ACCEPT = "accept"
    DROP = "drop"


class Outcome(NamedTuple):
    """What to do with a queued packet: accept (maybe with new bytes) or drop."""

    action: Action
    data: Optional[bytes] = None


DROP = Outcome(Action.DROP)
