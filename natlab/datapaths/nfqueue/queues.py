"""Two NFQUEUEs in one process, verdicts applied from engine outcomes.

``Queues(queue_in, queue_out, outside_iface, on_packet)`` binds both queues;
the daemon's select loop watches :meth:`Queues.fds` and calls
:meth:`Queues.drain` on the readable one. Each queued packet goes to
``on_packet(data, side) -> Outcome`` and gets exactly one verdict, whatever
happens: a packet without a verdict would sit in the kernel's queue forever.

The binding
-----------
:mod:`~natlab.datapaths.nfqueue.qsocket` (pure Python netlink, ``recvmmsg``
through ctypes) replaces netfilterqueue 1.1.0, which had no GSO flag, no
``NFQA_SKB_INFO`` and one receive and one verdict syscall per packet. Now:

- ``NFQA_CFG_F_GSO``: the kernel queues a GSO super-packet (a 64 KiB TCP burst)
  whole, one trip instead of ~45, and segments it on the way out;
  ``NFQA_CFG_F_FAIL_OPEN`` stays off: what the queue cannot take is dropped;
- ``NFQA_SKB_INFO``: partial checksums are handled by
  :mod:`~natlab.datapaths.nfqueue.partial` around the engine;
- a drain is one ``recvmmsg`` of up to :data:`BATCH` packets and one gathered
  ``sendmsg`` of their verdicts (:mod:`~natlab.datapaths.nfqueue.verdicts`:
  payload verdicts one message each, the rest as ``NFQNL_MSG_VERDICT_BATCH`` runs);
- copy range 65,535 (the kernel grants :data:`KERNEL_COPY_MAX`), so no packet is
  cut short; :meth:`Queues.bind` checks ``/proc/net/netfilter/nfnetlink_queue``.

A packet the kernel still cut short reaches the gateway, which drops it as
``truncated`` (rewriting part of a packet would corrupt it).
"""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path
from typing import Any, Callable

from natlab.datapaths.nfqueue import nfnetlink as nfq
from natlab.datapaths.nfqueue import partial
from natlab.datapaths.nfqueue.nfnetlink import COPY_RANGE, KERNEL_COPY_MAX, config_message  # noqa: F401
from natlab.datapaths.nfqueue.qsocket import BATCH, RECV_BUFFER, SOCK_RCVBUF, QueueSocket  # noqa: F401
from natlab.datapaths.nfqueue.verdicts import Verdicts
from natlab.engine.types import Side
from natlab.errors import BackendUnavailable
from natlab.gateway.outcome import Action, Outcome

log = logging.getLogger("natlab.gateway")

MAX_QUEUE_LEN = 4096
"""Packets the kernel keeps waiting for us per queue before it drops (no bypass)."""
PROC_QUEUES = Path("/proc/net/netfilter/nfnetlink_queue")
"""The kernel's per-queue counters, for the namespace of the process reading it."""
_QUEUE_FIELDS = ("queue", "peer_portid", "queue_total", "copy_mode", "copy_range",
                 "queue_dropped", "user_dropped", "id_sequence")
_SKB_GSO, _SKB_PARTIAL = nfq.SKB_GSO, nfq.SKB_CSUMNOTREADY
_ACCEPT, _NF_ACCEPT, _NF_DROP = Action.ACCEPT, nfq.NF_ACCEPT, nfq.NF_DROP
_parse = nfq.parse_packet
_INSIDE, _OUTSIDE = Side.INSIDE, Side.OUTSIDE
_VERDICT_KIND, _NFQA_VERDICT_HDR, _NFQA_PAYLOAD = nfq.VERDICT_KIND, nfq.NFQA_VERDICT_HDR, nfq.NFQA_PAYLOAD
_htonl = socket.htonl
_ACCEPT_BE = _htonl(nfq.NF_ACCEPT)


def set_copy_range(sock: socket.socket, queue: int, copy_range: int = COPY_RANGE) -> None:
    """Ask the kernel to copy up to ``copy_range`` bytes of each packet of ``queue``
    (on the queue's own socket; :meth:`Queues.bind` does it in its bind message)."""
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
                 on_packet: Callable[[bytes, Side], Outcome], *, batch: int = BATCH) -> None:
        self.queue_in = queue_in
        self.queue_out = queue_out
        self.outside_iface = outside_iface
        self.on_packet = on_packet
        self.batch = batch
        self._sockets: dict[int, QueueSocket] = {}
        self._inbound: dict[int, bool] = {}
        self._layouts: dict[int, Any] = {}
        """The layout of the last packet message of each queue (see :class:`nfnetlink.Layout`)."""
        self._outside_index = 0
        self._batching = True
        self.verdict_errors = 0
        """Packets whose handling raised (each got a DROP verdict)."""
        self.received = 0
        """Packets handed to the callback (the watchdog compares it with the kernel's backlog)."""
        self.counts = {"verdicts": 0, "batched": 0, "drains": 0, "gso": 0, "csum_partial": 0,
                       "csum_completed": 0, "largest": 0, "malformed": 0, "netlink_errors": 0,
                       "verdict_send_errors": 0}

    def bind(self) -> "Queues":
        from natlab.datapaths.nfqueue.qsocket import unavailable

        why = unavailable()
        if why is not None:
            raise BackendUnavailable(f"cannot use NFQUEUE here: {why}")
        self._outside_index = socket.if_nametoindex(self.outside_iface)
        try:
            for number, inbound in ((self.queue_in, True), (self.queue_out, False)):
                queue = QueueSocket(number, max_len=MAX_QUEUE_LEN, batch=self.batch).open()
                self._sockets[queue.fileno()] = queue
                self._inbound[queue.fileno()] = inbound
        except BaseException:
            self.close()
            raise
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

    def stats(self) -> dict[str, Any]:
        """The binding's own counters: verdicts given and how, GSO and partial-checksum packets."""
        sockets = self._sockets.values()
        return {**self.counts, "received": self.received, "verdict_errors": self.verdict_errors,
                "sendmsg": sum(q.sends for q in sockets), "recv_overruns": sum(q.overruns for q in sockets)}

    def fds(self) -> list[int]:
        return list(self._sockets)

    def drain(self, fd: int) -> int:
        """Handle up to :data:`BATCH` packets waiting on ``fd`` without blocking; how many came."""
        queue = self._sockets[fd]
        spans = queue.receive()
        if not spans:
            return 0
        counts = self.counts
        verdicts = Verdicts(queue.queue_be, batching=self._batching)
        plain, payloads = verdicts.plain.append, verdicts.payloads.append
        queue_be = queue.queue_be
        inbound = self._inbound[fd]
        outside = self._outside_index
        on_packet = self.on_packet
        complete = partial.complete
        pack_head = nfq.PAYLOAD_VERDICT.pack
        pads = nfq.PADS
        handled = gso = completed = partials = 0
        layout = self._layouts.get(fd)
        parse = layout.parse if layout is not None else None
        largest = counts["largest"]
        for view, off, end in spans:
            packet = parse(view, off, end) if parse is not None else None
            if packet is None:
                try:
                    packet = _parse(view, off, end)
                except (ValueError, struct.error):
                    counts["malformed"] += 1
                    packet_id = nfq.packet_id_of(view, off, end)
                    if packet_id is None:
                        verdicts.unbatched()  # a batch message could accept it unseen
                    else:
                        plain((packet_id, _NF_DROP))
                    continue
                if packet is None:
                    self._not_a_packet(queue, view, off)
                    continue
                layout = self._layouts[fd] = nfq.Layout.of(view, off, end)
                parse = layout.parse if layout is not None else None
            packet_id, indev, info, _cap_len, start, length = packet
            handled += 1
            if length > largest:
                largest = counts["largest"] = length
            try:
                if info & _SKB_GSO:
                    gso += 1
                    data: Any = view[start:start + length].tobytes()
                elif info & _SKB_PARTIAL:
                    partials += 1
                    data = bytearray(view[start:start + length])
                    if complete(data):
                        completed += 1
                else:
                    data = view[start:start + length].tobytes()
                outcome = on_packet(data, _OUTSIDE if inbound and indev == outside else _INSIDE)
                if outcome.action is _ACCEPT:
                    new = outcome.data
                    if new is None or new is data:
                        plain((packet_id, _NF_ACCEPT))
                        continue
                    if info & _SKB_GSO:
                        new = new if isinstance(new, bytearray) else bytearray(new)
                        partial.pseudo_header(new)  # the segmentation on the way out sums it
                    n = len(new)
                    pad = pads[n & 3]
                    head = pack_head(36 + n + len(pad), _VERDICT_KIND, 1, 0, 0, 0, 0, queue_be, 12,
                                     _NFQA_VERDICT_HDR, _ACCEPT_BE, _htonl(packet_id), 4 + n, _NFQA_PAYLOAD)
                    payloads((head, new, pad) if pad else (head, new))
                else:
                    plain((packet_id, _NF_DROP))
            except Exception:  # noqa: BLE001 - a verdict must be given, whatever went wrong
                self.verdict_errors += 1
                if self.verdict_errors & (self.verdict_errors - 1) == 0:  # 1st, 2nd, 4th, 8th ...
                    log.exception("error while giving a verdict (%d so far); dropping the packet",
                                  self.verdict_errors)
                plain((packet_id, _NF_DROP))
        self.received += handled
        counts["gso"] += gso
        counts["csum_partial"] += partials
        counts["csum_completed"] += completed
        counts["drains"] += 1
        counts["verdicts"] += verdicts.count
        counts["batched"] += verdicts.batched()
        failed = queue.send(verdicts.messages())
        if failed:
            # Those packets wait in the kernel: a later batch ACCEPT must never cover one.
            self._batching = False
            counts["verdict_send_errors"] += len(failed)
            log.error("could not send %d verdicts on queue %d; batch verdicts are off from now on",
                      len(failed), queue.queue)
        return handled

    def _not_a_packet(self, queue: QueueSocket, view, off: int) -> None:
        kind = struct.unpack_from("=H", view, off + 4)[0]
        if kind != nfq.NLMSG_ERROR:
            return
        code = -nfq.error_of(view, off)
        if code:
            self.counts["netlink_errors"] += 1
            if self.counts["netlink_errors"] & (self.counts["netlink_errors"] - 1) == 0:
                log.warning("queue %d: the kernel refused a verdict (errno %d; %d so far)",
                            queue.queue, code, self.counts["netlink_errors"])

    def close(self) -> None:
        for queue in self._sockets.values():
            queue.close()
        self._sockets.clear()
        self._inbound.clear()
