"""The queue watchdog: is the kernel holding packets the gateway never sees?

Theory of operation
-------------------
Every :data:`INTERVAL` seconds the daemon calls :meth:`QueueWatchdog.check`
with the kernel's view of our queues (``queue_total``: packets waiting for a
verdict, from :func:`natlab.datapaths.nfqueue.queues.queue_stats`) and the number of packets
the gateway has taken off them so far. The state is

- ``ok``: nothing waits;
- ``busy``: packets wait, and the gateway is taking packets (a flood);
- ``stalled``: packets have waited for :data:`STALL_CHECKS` checks in a row
  while the gateway took none. The kernel holds packets we cannot read (a
  message the binding cannot parse, say): they will never get a verdict, and
  once the queue is full nothing passes. ``natlab status`` shows it.

The class reads no clock and no file: both come in as arguments.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

log = logging.getLogger("natlab.gateway")

INTERVAL = 1.0
STALL_CHECKS = 3


class QueueWatchdog:
    def __init__(self, interval: float = INTERVAL, stall_checks: int = STALL_CHECKS) -> None:
        self.interval = interval
        self.stall_checks = stall_checks
        self.state = "ok"
        self.backlog = 0
        self.checks = 0
        self.stalls = 0
        """Times the state became ``stalled``."""
        self._idle_checks = 0
        self._last_received: Optional[int] = None
        self._next = 0.0

    def next_deadline(self) -> float:
        return self._next

    def check(self, now: float, kernel: Mapping[str, Mapping[str, int]], received: int) -> str:
        """One look at the queues; returns the new state."""
        self._next = now + self.interval
        self.checks += 1
        self.backlog = sum(row.get("queue_total", 0) for row in kernel.values())
        progressed = self._last_received is None or received != self._last_received
        self._last_received = received
        if self.backlog == 0:
            self._idle_checks, state = 0, "ok"
        elif progressed:
            self._idle_checks, state = 0, "busy"
        else:
            self._idle_checks += 1
            state = "stalled" if self._idle_checks >= self.stall_checks else self.state
            if state == "ok":
                state = "busy"
        if state == "stalled" and self.state != "stalled":
            self.stalls += 1
            log.error("queue watchdog: %d packets wait in the kernel's queues and none reached "
                      "the gateway for %d checks", self.backlog, self._idle_checks)
        self.state = state
        return state

    def report(self) -> dict[str, Any]:
        return {"state": self.state, "backlog": self.backlog, "checks": self.checks,
                "stalls": self.stalls}
