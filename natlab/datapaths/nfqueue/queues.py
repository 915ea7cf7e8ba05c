"""NFQUEUE binding: two queues in one process, verdicts applied from engine outcomes.

``Queues(spec, on_packet)`` binds ``spec.queue_in`` and ``spec.queue_out``;
the daemon's select loop watches :meth:`Queues.fds` and calls
:meth:`Queues.drain` on the readable one. Each queued packet goes to
``on_packet(data, side) -> Action`` and gets exactly one verdict, whatever
happens: a packet without a verdict would sit in the kernel's queue forever.

Whole packets, jumbo frames included
------------------------------------
NetfilterQueue caps the copy range at 4,016 bytes (its 4,096-byte receive buffer
less 80 for metadata) and ``run_socket`` reads 4,096 bytes at a time. A bigger
packet would then arrive as a netlink message longer than the read: cut short,
libnetfilter_queue cannot parse it, the callback never runs and the packet holds
a queue slot forever. So :class:`_Batch` reads :data:`RECV_BUFFER` bytes (a whole
message whatever ``run_socket`` asks for), and after binding :func:`set_copy_range`
sends the queue's own ``NFQNL_MSG_CONFIG`` on the queue's netlink socket to copy
up to 65,535 bytes, the largest IPv4 packet. :func:`queue_stats` reads the
kernel's side of each queue (``/proc/net/netfilter/nfnetlink_queue``), and
:meth:`Queues.bind` checks there that the copy range took.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import warnings
from pathlib import Path
from typing import Callable

from natlab.engine.types import Side
from natlab.errors import BackendUnavailable
from natlab.gateway.outcome import Action, Outcome

log = logging.getLogger("natlab.gateway")

MAX_QUEUE_LEN = 4096
"""Packets the kernel keeps waiting for us per queue before it drops (no bypass)."""
COPY_RANGE = 0xFFFF
"""Copy whole packets to userspace: the largest IPv4 packet (see :func:`set_copy_range`)."""
KERNEL_COPY_MAX = COPY_RANGE - 4
"""What the kernel grants for that: 65,535 less a netlink attribute header (NFQNL_MAX_COPY_RANGE)."""
RECV_BUFFER = COPY_RANGE + 4096
"""One netlink message: a whole packet plus its metadata attributes."""
SOCK_RCVBUF = 16 << 20
"""Socket receive buffer asked for (the kernel caps it at ``net.core.rmem_max``)."""
PROC_QUEUES = Path("/proc/net/netfilter/nfnetlink_queue")
"""The kernel's per-queue counters, for the namespace of the process reading it."""
_QUEUE_FIELDS = ("queue", "peer_portid", "queue_total", "copy_mode", "copy_range",
                 "queue_dropped", "user_dropped", "id_sequence")
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
        # ``size`` is netfilterqueue's 4,096: too small for a jumbo packet's message.
        if self.left <= 0:
            raise BlockingIOError(errno.EAGAIN, "batch done")
        self.left -= 1
        return self.sock.recv(RECV_BUFFER)


_NFNL_SUBSYS_QUEUE = 3
_NFQNL_MSG_CONFIG = 2
_NFQA_CFG_PARAMS = 2
_NFQNL_COPY_PACKET = 2
_NLM_F_REQUEST = 1


def config_message(queue: int, copy_range: int, seq: int = 0) -> bytes:
    """``NFQNL_MSG_CONFIG`` setting COPY_PACKET mode with ``copy_range`` for ``queue``."""
    params = struct.pack(">IB", copy_range, _NFQNL_COPY_PACKET)   # nfqnl_msg_config_params
    attr = struct.pack("=HH", 4 + len(params), _NFQA_CFG_PARAMS) + params
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attr  # nfgenmsg
    header = struct.pack("=IHHII", 16 + len(body), (_NFNL_SUBSYS_QUEUE << 8) | _NFQNL_MSG_CONFIG,
                         _NLM_F_REQUEST, seq, 0)
    return header + body


def set_copy_range(sock: socket.socket, queue: int, copy_range: int = COPY_RANGE) -> None:
    """Ask the kernel to copy up to ``copy_range`` bytes of each packet of ``queue``.

    Sent on the queue's own socket (the kernel accepts config only from the
    queue's owner); no ack is asked for, since packets may already be arriving
    on that socket: an error would come back as a message libnetfilter_queue
    skips, and :meth:`Queues.bind` checks the result in :func:`queue_stats`.
    """
    sock.send(config_message(queue, copy_range))


def parse_queue_stats(text: str) -> dict[int, dict[str, int]]:
    """``/proc/net/netfilter/nfnetlink_queue`` as ``{queue: {field: value}}``."""
    out: dict[int, dict[str, int]] = {}
    for line in text.splitlines():
        values = line.split()
        if len(values) < len(_QUEUE_FIELDS):
            continue
        try:
            row = dict(zip(_QUEUE_FIELDS, (int(v) for v in values)))
        except ValueError:
            continue
        out[row["queue"]] = row
    return out


def queue_stats() -> dict[int, dict[str, int]]:
    """The kernel's counters of every queue bound in this namespace (empty if none)."""
    try:
        return parse_queue_stats(PROC_QUEUES.read_text())
    except OSError:
        return {}


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
        self.received = 0
        """Packets handed to the callback (the watchdog compares it with the kernel's backlog)."""

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
                queue.bind(number, callback, max_len=MAX_QUEUE_LEN, range=COPY_RANGE,
                           sock_len=SOCK_RCVBUF)
            fd = queue.get_fd()
            self._queues[fd] = queue
            sock = socket.fromfd(fd, socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
            sock.setblocking(False)
            self._batches[fd] = _Batch(sock)
            set_copy_range(sock, number)
        self._check_copy_range()
        return self

    def _check_copy_range(self) -> None:
        stats = queue_stats()
        for number in (self.queue_in, self.queue_out):
            got = stats.get(number, {}).get("copy_range")
            if got is not None and got < KERNEL_COPY_MAX:
                # Bigger packets then reach us cut short and are dropped as "truncated".
                log.warning("queue %d copies only %d bytes per packet (asked %d)", number, got, COPY_RANGE)

    def kernel_stats(self) -> dict[str, dict[str, int]]:
        """The kernel's counters of our two queues, as ``{"in": {...}, "out": {...}}``."""
        stats = queue_stats()
        out = {}
        for side, number in (("in", self.queue_in), ("out", self.queue_out)):
            row = stats.get(number)
            if row is not None:
                out[side] = {k: row[k] for k in ("queue_total", "queue_dropped", "user_dropped",
                                                 "id_sequence", "copy_range")}
        return out

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
        self.received += 1
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
