"""The verdicts of one batch of queued packets, as the fewest netlink messages (no I/O).

Every packet read gets exactly one verdict. A verdict with a new payload is one
``NFQNL_MSG_VERDICT`` carrying it; those go first. The others (accept or drop,
payload unchanged) are then run-length coded in id order as
``NFQNL_MSG_VERDICT_BATCH`` messages: "this verdict for every packet still
queued up to id N". The kernel queues packets, and sends them to us, in id
order, and every packet before this batch already has its verdict, so a batch
message covers exactly the packets of its run.

A batch message would also cover a packet we read but could not identify; so
:meth:`Verdicts.unbatched` switches batching off, and each verdict goes alone.
"""

from __future__ import annotations

from natlab.datapaths.nfqueue import nfnetlink as nfq


class Verdicts:
    __slots__ = ("queue_be", "batching", "payloads", "plain")

    def __init__(self, queue_be: int, *, batching: bool = True) -> None:
        self.queue_be = queue_be
        self.batching = batching
        self.payloads: list[tuple] = []
        """Messages (tuples of parts, :func:`nfnetlink.payload_parts`) of verdicts with a payload."""
        self.plain: list[tuple[int, int]] = []
        """(packet id, verdict) of the others, in the order read."""

    @property
    def count(self) -> int:
        return len(self.plain) + len(self.payloads)

    def give(self, packet_id: int, verdict: int, payload=None) -> None:
        """Record the one verdict of ``packet_id`` (``payload``: its new bytes, or None)."""
        if payload is None:
            self.plain.append((packet_id, verdict))
        else:
            self.payloads.append(nfq.payload_parts(self.queue_be, packet_id, verdict, payload))

    def unbatched(self) -> None:
        """Send each verdict alone (a message of this batch could not be identified)."""
        self.batching = False

    def messages(self) -> list[tuple]:
        """Every message to send, in order: payload verdicts, then the runs of the others."""
        out = self.payloads
        plain = self.plain
        header = nfq.verdict_header
        queue_be = self.queue_be
        if not self.batching:
            out.extend((header(queue_be, pid, verdict),) for pid, verdict in plain)
            return out
        n = len(plain)
        for i, (pid, verdict) in enumerate(plain):
            if i + 1 == n or plain[i + 1][1] != verdict:  # the run ends here
                out.append((header(queue_be, pid, verdict, batch=True),))
        return out

    def batched(self) -> int:
        """Verdicts that travel inside a batch message covering more than one packet."""
        if not self.batching:
            return 0
        runs = sum(1 for i, (_pid, v) in enumerate(self.plain)
                   if i + 1 == len(self.plain) or self.plain[i + 1][1] != v)
        return len(self.plain) - runs
