"""The session cache's bookkeeping: which entries the kernel holds, under which marks, and
what their counters have said so far. Pure: times come in as arguments (gateway time).

Theory of operation
-------------------
After a forwarded packet the serving loop asks :meth:`Cache.wants` about its wire
key (:func:`wire_key`), and only then the engine for its
:class:`~natlab.engine.fastpath.FastEntry`, which it :meth:`Cache.offer` s. A key is
installed the second time it comes within a quantum (or at once if it was cached a
moment ago): a flow of one packet, the bulk of what a NAT sees, costs no entry and
no nft update. :meth:`Cache.take`
hands out what to install, each with a fresh *mark* and a kernel timeout that ends
:data:`MARGIN` before the entry's expiry, so the kernel's element never outlives
the engine's decision; :meth:`Cache.installed` records when the element is surely
gone (:attr:`Installed.ends`).

The engine must see a packet of every direction once per quantum, and decides
anew on it. Three quarters into an entry's life the shell arms a *probe* for its
key (:meth:`Cache.probe_due`): the kernel sends the key's next packet, one only,
to NFQUEUE and keeps rewriting the rest. The engine's entry for that packet, with
the same rewrite, *renews* the cached one in place (:meth:`Cache.take_renewals`:
one transaction replaces the session element, same mark, new timeout), so a busy
flow never leaves the kernel. An entry not renewed (no packet came, or the engine
offered none) is *unlinked* shortly before its element would end
(:meth:`Cache.unlink_due`: deleted while surely still there, so the delete cannot
race the kernel's own expiry); the flow's next packet meets the engine, whose new
entry is installed at its first offer. Should the loop be late, the element
simply times out in the kernel.

Counters live on the mark's ``seen`` element (see :mod:`~.nft`), which outlives the
session element. :meth:`Cache.account` takes a reading of every mark (packets,
bytes, when the last hit was), turns the increase since the last reading into
:class:`Fold` s for the gateway (``last_seen``: the last hit, never past the
entry's expiry), and *retires*
the entries whose session element had surely gone before the reading started:
their count is final, their marks can be given out again once the shell has
deleted their rewrite elements (:meth:`Cache.release`). A mark is never reused
while a session element could still point at it.

A TCP segment with SYN, FIN or RST always reaches the engine (the rules do not
match it); :meth:`Cache.close` then names the entries of that connection, both
directions, for the shell to unlink at once, so every segment after a FIN or RST
meets the engine too. :meth:`Cache.clear` forgets everything (after the shell
flushed the session maps): before any op that changes the gateway's state.
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from natlab.engine.checksum_deltas import ICMP, TCP, UDP
from natlab.engine.fastpath import FastEntry
from natlab.engine.types import Side

MARGIN = 0.010
"""Seconds the kernel's element ends before the entry's expiry: covers the time between
computing the timeout and the kernel starting it (one install batch), and jiffies."""
SETTLE = 0.002
"""Seconds after an element's computed end before its counter is taken as final (the
kernel rounds a timeout down to jiffies, so its element never outlives the computed end)."""
MIN_LIFE = 0.050
"""An entry with less left than this is not worth an nft update."""
PROBE_AT = 0.75
"""Share of an entry's life after which its probe is armed."""
PROBE_MIN = 0.100
"""An entry with less than this left at its probe time gets none (it is unlinked instead)."""
UNLINK_SLACK = 0.020
"""An element is unlinked this long before its kernel timeout runs out; one closer to
its end than :data:`UNLINK_SAFE` is left to expire instead (a delete racing the
kernel's expiry would fail the whole transaction)."""
UNLINK_SAFE = 0.008
"""Two jiffies at HZ=250: the kernel may end an element this much before its timeout."""
CAPACITY = 65536
"""Entries the kernel holds at most; offers beyond it are refused (and counted)."""
MARK_LIMIT = 1 << 31

Key = tuple[int, int, int, int, int]
Reading = tuple[int, int, float]
"""What the kernel counted for a mark: (packets, bytes, gateway time of the last hit)."""
Flow = tuple[int, int, int, int, int]
"""(proto, remote address, remote port, external address, external port): a session, both directions."""

_CONTROL = 0x02 | 0x01 | 0x04  # SYN, FIN, RST
_IPV4 = struct.Struct("!BBHHHBBHII")
_PORTS = struct.Struct("!HH")


def flow_of(entry: FastEntry) -> Flow:
    """The session an entry belongs to, the same for its outbound and its inbound entry."""
    if entry.outbound:
        return (entry.proto, entry.dst, entry.dport, entry.new_src, entry.new_sport)
    return (entry.proto, entry.src, entry.sport, entry.dst, entry.dport)


def _inside_of(entry: FastEntry) -> Key:
    """(proto, internal address, internal port, remote address, remote port)."""
    if entry.outbound:
        return entry.key
    return (entry.proto, entry.new_dst, entry.new_dport, entry.src, entry.sport)


def wire_key(data: bytes | bytearray, side: Side) -> Optional[Key]:
    """The key a :class:`~natlab.engine.fastpath.FastEntry` for this packet would have (the
    same fields, read the same way), or None where the engine offers no entry anyway."""
    if len(data) < 28:
        return None
    vihl, _tos, _total, _ident, frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(data)
    ihl = (vihl & 15) << 2
    if vihl >> 4 != 4 or frag & 0x3FFF or len(data) < ihl + 8:
        return None
    if proto == UDP or proto == TCP:
        sport, dport = _PORTS.unpack_from(data, ihl)
        return (proto, src, sport, dst, dport)
    if proto == ICMP:
        ident = (data[ihl + 4] << 8) | data[ihl + 5]
        if side is Side.INSIDE and data[ihl] == 8:
            return (proto, src, ident, dst, 0)
        if side is Side.OUTSIDE and data[ihl] == 0:
            return (proto, src, 0, dst, ident)
    return None


def control_key(data: bytes | bytearray) -> Optional[Key]:
    """The wire key of a TCP segment carrying SYN, FIN or RST (RFC 5382 state changes), else None."""
    if len(data) < 40 or data[9] != TCP:
        return None
    vihl, _tos, _total, _ident, _frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(data)
    ihl = (vihl & 15) << 2
    if ihl < 20 or len(data) < ihl + 14 or not data[ihl + 13] & _CONTROL:
        return None
    sport, dport = _PORTS.unpack_from(data, ihl)
    return (proto, src, sport, dst, dport)


@dataclass(slots=True)
class Installed:
    mark: int
    entry: FastEntry
    ends: float
    """Gateway time by which the kernel's session element has surely gone."""
    packets: int = 0
    """What its counter said at the last reading (already folded into the gateway)."""
    nbytes: int = 0
    probe_at: float = 0.0
    unlink_at: float = 0.0
    probing: bool = False
    """A probe is armed: the engine's next entry for the key renews this one."""


def same_rewrite(a: FastEntry, b: FastEntry) -> bool:
    return (a.new_src, a.new_sport, a.new_dst, a.new_dport) == (b.new_src, b.new_sport, b.new_dst, b.new_dport)


@dataclass(frozen=True, slots=True)
class Install:
    mark: int
    entry: FastEntry
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Fold:
    """Packets the kernel rewrote for ``entry`` since the last reading, for ``Gateway.fold_fast``."""

    entry: FastEntry
    packets: int
    nbytes: int
    last_seen: float


class Cache:
    def __init__(self, *, quantum: float, reserved: Iterable[int] = (), capacity: int = CAPACITY) -> None:
        if quantum <= 0:
            raise ValueError(f"the cache quantum must be > 0 seconds, got {quantum!r}")
        self.quantum = quantum
        self.capacity = capacity
        self._reserved = frozenset(reserved) | {0}
        self._by_mark: dict[int, Installed] = {}
        self._by_key: dict[Key, Installed] = {}
        self._flows: dict[Flow, set[int]] = {}
        self._flow_of_inside: dict[Key, Flow] = {}
        self._heap: list[tuple[float, int]] = []
        self._unlinks: list[tuple[float, int]] = []
        self._probes: list[tuple[float, int]] = []
        self._pending: dict[Key, FastEntry] = {}
        self._renewals: dict[Key, FastEntry] = {}
        self._seen: dict[Key, float] = {}
        self._seen_before: dict[Key, float] = {}
        self._seen_since = 0.0
        self._free: list[int] = []
        self._next_mark = 1
        self.stats = {"hits": 0, "hit_bytes": 0, "installs": 0, "retired": 0, "unlinked": 0, "closed": 0,
                      "flushes": 0, "first_offers": 0, "full": 0, "probes": 0, "renewed": 0}

    # --- what goes in ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_mark)

    @property
    def pending(self) -> int:
        """Entries waiting to be installed."""
        return len(self._pending)

    @property
    def renewals(self) -> int:
        """Entries waiting to be renewed in place."""
        return len(self._renewals)

    def wants(self, key: Key, now: float) -> bool:
        """Whether an offer for ``key`` could be taken now (else it is noted as a first one):
        the shell asks before it asks the engine, so a one-packet flow costs no entry."""
        current = self._by_key.get(key)
        if current is not None and now < current.ends:
            return current.probing
        if key in self._pending or self._seen_recently(key, now):
            return True
        self._seen[key] = now
        self.stats["first_offers"] += 1
        return False

    def offer(self, entry: FastEntry, now: float) -> None:
        """An entry the engine just offered; queued for installing if worth it."""
        if entry.expires - now - MARGIN < MIN_LIFE:
            return
        key = entry.key
        current = self._by_key.get(key)
        if current is not None and now < current.ends:
            if current.probing and same_rewrite(current.entry, entry) and entry.expires > current.entry.expires:
                self._renewals[key] = entry  # the probe's packet: renew in place
            return  # else its element may still be in the kernel: an add would clash
        if key not in self._pending and not self._seen_recently(key, now):
            self._seen[key] = now
            self.stats["first_offers"] += 1
            return
        self._pending[key] = entry

    def _seen_recently(self, key: Key, now: float) -> bool:
        if now - self._seen_since > self.quantum:  # two generations bound the memory
            self._seen_before, self._seen = self._seen, {}
            self._seen_since = now
        seen = self._seen.get(key, self._seen_before.get(key))
        return seen is not None and now - seen <= self.quantum

    def take(self, now: float, limit: int) -> list[Install]:
        """Up to ``limit`` pending entries with their marks and kernel timeouts (the rest stay pending)."""
        out: list[Install] = []
        while self._pending and len(out) < limit:
            key, entry = next(iter(self._pending.items()))
            del self._pending[key]
            left = entry.expires - now - MARGIN
            current = self._by_key.get(key)
            if left < MIN_LIFE or (current is not None and now < current.ends):
                continue
            if len(self._by_mark) + len(out) >= self.capacity:
                self.stats["full"] += 1
                continue
            out.append(Install(self._alloc(), entry, int(left * 1000)))
        return out

    def take_renewals(self, now: float) -> list[Install]:
        """The renewals due: the same mark, the new entry, a kernel timeout from ``now``.

        Only entries surely still in the kernel are renewed (the renewal deletes their
        session element); the others end as they would have."""
        out = []
        for key, entry in self._renewals.items():
            inst = self._by_key.get(key)
            if inst is None or not inst.probing or now >= inst.entry.expires - MARGIN - UNLINK_SAFE:
                continue
            left = entry.expires - now - MARGIN
            if left >= MIN_LIFE:
                out.append(Install(inst.mark, entry, int(left * 1000)))
        self._renewals.clear()
        return out

    def renewed(self, batch: Iterable[Install], now: float) -> None:
        """``batch``'s session elements were replaced as of ``now`` (after the transaction)."""
        for item in batch:
            inst = self._by_mark[item.mark]
            inst.entry = item.entry
            inst.probing = False
            self._schedule(inst, now, item.timeout_ms)
            self.stats["renewed"] += 1

    def _schedule(self, inst: Installed, now: float, timeout_ms: int) -> None:
        """When the element surely ends, when to probe it and when to unlink it."""
        inst.ends = now + timeout_ms / 1000 + SETTLE
        heapq.heappush(self._heap, (inst.ends, inst.mark))
        end = inst.entry.expires - MARGIN
        inst.unlink_at = end - UNLINK_SLACK
        if inst.unlink_at > now:
            heapq.heappush(self._unlinks, (inst.unlink_at, inst.mark))
        inst.probe_at = now + PROBE_AT * (end - now)
        if end - inst.probe_at >= PROBE_MIN:
            heapq.heappush(self._probes, (inst.probe_at, inst.mark))

    def next_probe(self) -> Optional[float]:
        return self._probes[0][0] if self._probes else None

    def probe_due(self, now: float) -> list[tuple[Installed, int]]:
        """Entries to arm a probe for now, each with the probe's kernel timeout (ms): until
        shortly before the entry would be unlinked."""
        out = []
        while self._probes and self._probes[0][0] <= now:
            at, mark = heapq.heappop(self._probes)
            inst = self._by_mark.get(mark)
            if inst is None or inst.probe_at != at or self._by_key.get(inst.entry.key) is not inst:
                continue
            left = int((inst.unlink_at - now) * 1000)
            if left >= 1:
                out.append((inst, left))
        return out

    def probed(self, entries: Iterable[Installed]) -> None:
        for inst in entries:
            inst.probing = True
            self.stats["probes"] += 1

    def _alloc(self) -> int:
        if self._free:
            return self._free.pop()
        while self._next_mark in self._reserved:
            self._next_mark += 1
        if self._next_mark >= MARK_LIMIT:
            raise RuntimeError("session marks exhausted")  # capacity keeps this from happening
        mark = self._next_mark
        self._next_mark += 1
        return mark

    def installed(self, batch: Iterable[Install], now: float) -> None:
        """``batch`` is in the kernel, as of ``now`` (taken after the transaction returned)."""
        for item in batch:
            inst = Installed(item.mark, item.entry, 0.0)
            self._by_mark[item.mark] = inst
            self._by_key[item.entry.key] = inst
            flow = flow_of(item.entry)
            self._flows.setdefault(flow, set()).add(item.mark)
            self._flow_of_inside[_inside_of(item.entry)] = flow
            self._schedule(inst, now, item.timeout_ms)
            self.stats["installs"] += 1

    def failed(self, batch: Iterable[Install]) -> None:
        """``batch`` never reached the kernel: its marks are free again."""
        self._free.extend(item.mark for item in batch)

    # --- what comes out ----------------------------------------------------------

    def next_due(self) -> Optional[float]:
        """When the first session element will surely have gone (then its count is final)."""
        return self._heap[0][0] if self._heap else None

    def next_unlink(self) -> Optional[float]:
        return self._unlinks[0][0] if self._unlinks else None

    def unlink_due(self, now: float) -> list[Installed]:
        """Entries to unlink now, shortly before their end (see the module docstring)."""
        out = []
        while self._unlinks and self._unlinks[0][0] <= now:
            at, mark = heapq.heappop(self._unlinks)
            inst = self._by_mark.get(mark)
            if inst is None or inst.unlink_at != at or self._by_key.get(inst.entry.key) is not inst:
                continue  # retired, unlinked, renewed or replaced meanwhile
            if now < inst.entry.expires - MARGIN - UNLINK_SAFE:
                out.append(inst)
        return out

    def account(self, readings: Mapping[int, Reading], now: float,
                read_started: float) -> tuple[list[Fold], list[Installed]]:
        """Fold what the counters say beyond the last reading; retire what had gone before it.

        Returns the folds and the retired entries, whose rewrite elements the shell
        deletes before it :meth:`release` s them.
        """
        folds = self._folds(readings, now)
        retired = []
        while self._heap and self._heap[0][0] <= read_started:
            ends, mark = heapq.heappop(self._heap)
            inst = self._by_mark.get(mark)
            if inst is None or inst.ends != ends:
                continue  # unlinked early: its heap item was pushed again
            retired.append(inst)
            self._drop(inst, now)
        self.stats["retired"] += len(retired)
        return folds, retired

    def _folds(self, readings: Mapping[int, Reading], now: float) -> list[Fold]:
        folds = []
        for mark, inst in self._by_mark.items():
            reading = readings.get(mark)
            if reading is None:
                continue
            packets, nbytes = reading[0] - inst.packets, reading[1] - inst.nbytes
            if packets > 0:
                folds.append(Fold(inst.entry, packets, nbytes, min(reading[2], now, inst.entry.expires)))
                inst.packets, inst.nbytes = reading[0], reading[1]
                self.stats["hits"] += packets
                self.stats["hit_bytes"] += nbytes
        return folds

    def _drop(self, inst: Installed, now: float) -> None:
        del self._by_mark[inst.mark]
        key = inst.entry.key
        if self._by_key.get(key) is inst:
            del self._by_key[key]
            self._seen[key] = now  # a flow cached a moment ago is installed again at once
        flow = flow_of(inst.entry)
        marks = self._flows.get(flow)
        if marks is not None:
            marks.discard(inst.mark)
            if not marks:
                del self._flows[flow]
                self._flow_of_inside.pop(_inside_of(inst.entry), None)

    def release(self, retired: Iterable[Installed]) -> None:
        """The retired entries' rewrite elements are gone: their marks may be given out again."""
        self._free.extend(inst.mark for inst in retired)

    # --- TCP state changes and resets ----------------------------------------------

    def close(self, key: Key, side: Side, now: float) -> list[Installed]:
        """A SYN/FIN/RST segment with wire key ``key`` met the engine: the entries of its
        connection (both directions) still matching in the kernel, for the shell to unlink."""
        flow: Optional[Flow] = key if side is Side.OUTSIDE else self._flow_of_inside.get(key)
        marks = self._flows.get(flow) if flow is not None else None
        self._forget_offers(key)
        if not marks:
            return []
        out = []
        for mark in marks:
            inst = self._by_mark[mark]
            self._forget_offers(inst.entry.key)
            if now < inst.entry.expires - MARGIN - UNLINK_SAFE and self._by_key.get(inst.entry.key) is inst:
                out.append(inst)
        return out

    def _forget_offers(self, key: Key) -> None:
        self._pending.pop(key, None)
        self._renewals.pop(key, None)
        self._seen.pop(key, None)
        self._seen_before.pop(key, None)

    def unlinked(self, entries: Iterable[Installed], now: float, closed: bool = False) -> None:
        """The session elements of ``entries`` were deleted as of ``now``: their counts are final.

        Unless ``closed`` (a FIN or RST), the next offer of the key installs at once."""
        for inst in entries:
            if self._by_key.get(inst.entry.key) is inst:
                del self._by_key[inst.entry.key]
                if not closed:
                    self._seen[inst.entry.key] = now
            inst.ends = now
            heapq.heappush(self._heap, (now, inst.mark))
            self.stats["closed" if closed else "unlinked"] += 1

    # --- everything at once ------------------------------------------------------

    def clear(self, readings: Mapping[int, Reading], now: float) -> list[Fold]:
        """The shell flushed every session map, then read ``readings``: fold the rest, forget all.

        Pending entries go too: they were decided under the state about to change.
        """
        folds = self._folds(readings, now)
        self._by_mark.clear()
        self._by_key.clear()
        self._flows.clear()
        self._flow_of_inside.clear()
        self._heap.clear()
        self._unlinks.clear()
        self._probes.clear()
        self._pending.clear()
        self._renewals.clear()
        self._free.clear()
        self._next_mark = 1
        self.stats["flushes"] += 1
        return folds

    def report(self) -> dict[str, int]:
        return {**self.stats, "entries": len(self._by_key), "marks": len(self._by_mark),
                "pending": len(self._pending)}
