"""NFQUEUE binding: two queues in one process, verdicts applied from engine outcomes.

``Queues(spec, on_packet)`` binds ``spec.queue_in`` and ``spec.queue_out``;
the daemon's select loop watches :meth:`Queues.fds` and calls
:meth:`Queues.drain` on the readable one. Each queued packet goes to
``on_packet(data, side) -> Action`` and gets exactly one verdict, whatever
happens: a packet without a verdict would sit in the kernel's queue forever.
"""

from __future__ import annotations

import errno
import logging
import socket
import warnings
from enum import Enum
from typing import Callable, NamedTuple, Optional

from natlab.engine.types import Side
from natlab.errors import BackendUnavailable

log = logging.getLogger("natlab.gateway")

MAX_QUEUE_LEN = 4096
"""Packets the kernel keeps waiting for us per queue before it drops (no bypass)."""
COPY_RANGE = 0xFFFF
"""Copy whole packets to userspace (netfilterqueue caps this at its buffer size)."""
BATCH = 64
"""Packets handled per readable queue before the loop looks at control clients and timers
again: under a flood the queue never runs dry, and ``run(block=False)`` would never return."""


class _Batch:
    """A socket whose ``recv`` reports EAGAIN after ``BATCH`` messages (for ``run_socket``)."""

    __slots__ = ("sock", "left")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.left = 0

    def recv(self, size: int) -> bytes:
        if self.left <= 0:
            raise BlockingIOError(errno.EAGAIN, "batch done")
        self.left -= 1
        return self.sock.recv(size)


class Action(str, Enum):
    ACCEPT = "accept"
    DROP = "drop"


class Outcome(NamedTuple):
    """What to do with a queued packet: accept (maybe with new bytes) or drop."""

    action: Action
    data: Optional[bytes] = None


class Queues:
    def __init__(self, queue_in: int, queue_out: int, outside_iface: str,
                 on_packet: Callable[[bytes, Side], Outcome]) -> None:
        self.queue_in = queue_in
        self.queue_out = queue_out
        self.outside_iface = outside_iface
        self.on_packet = on_packet
        self._queues: dict[int, object] = {}
        self._batches: dict[int, _Batch] = {}
        self._outside_index = 0
        self.verdict_errors = 0

    def bind(self) -> "Queues":
        try:
            from netfilterqueue import NetfilterQueue
        except ImportError as err:
            raise BackendUnavailable("netfilterqueue is not installed",
                                     hint="pip install 'natlab[nfqueue]'") from err
        self._outside_index = socket.if_nametoindex(self.outside_iface)
        for number, callback in ((self.queue_in, self._on_in), (self.queue_out, self._on_out)):
            queue = NetfilterQueue()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # rcvbuf smaller than asked: fine
                queue.bind(number, callback, max_len=MAX_QUEUE_LEN, range=COPY_RANGE)
            fd = queue.get_fd()
            self._queues[fd] = queue
            sock = socket.fromfd(fd, socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
            sock.setblocking(False)
            self._batches[fd] = _Batch(sock)
        return self

    def fds(self) -> list[int]:
        return list(self._queues)

    def drain(self, fd: int) -> None:
        """Handle up to :data:`BATCH` packets waiting on ``fd`` without blocking."""
        batch = self._batches[fd]
        batch.left = BATCH
        self._queues[fd].run_socket(batch)  # type: ignore[attr-defined]

    def _on_in(self, packet) -> None:
        side = Side.OUTSIDE if packet.indev == self._outside_index else Side.INSIDE
        self._apply(packet, side)

    def _on_out(self, packet) -> None:
        self._apply(packet, Side.INSIDE)

    def _apply(self, packet, side: Side) -> None:
        # An exception escaping here would leave the packet without a verdict.
        try:
            data = packet.get_payload()
            outcome = self.on_packet(data, side)
            if outcome.action is Action.ACCEPT:
                if outcome.data is not None and outcome.data is not data:
                    packet.set_payload(bytes(outcome.data))
                packet.accept()
            else:
                packet.drop()
        except Exception:  # noqa: BLE001 - a verdict must be given, whatever went wrong
            self.verdict_errors += 1
            if self.verdict_errors & (self.verdict_errors - 1) == 0:  # 1st, 2nd, 4th, 8th ...
                log.exception("error while giving a verdict (%d so far); dropping the packet",
                              self.verdict_errors)
            try:
                packet.drop()
            except RuntimeError:  # verdict already given
                pass

    def close(self) -> None:
        for queue in self._queues.values():
            queue.unbind()  # type: ignore[attr-defined]
        for batch in self._batches.values():
            batch.sock.close()
        self._queues.clear()
        self._batches.clear()
