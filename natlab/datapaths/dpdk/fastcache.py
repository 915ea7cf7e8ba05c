"""The Python side of the C session table: what is installed, and folding it back.

Theory of operation
-------------------
After the engine forwarded a packet the slow path calls :meth:`FastCache.offer`:
the gateway's :meth:`~natlab.gateway.service.Gateway.fast_entry` says whether
the next packets of that 5-tuple and direction may skip the engine; if so the
entry goes into the C table with the egress port, Ethernet header and MTU the
router chose. The engine stays the authority:

- :meth:`fold` reads the counters back (only entries hit since the last read)
  and gives them to ``gateway.fold_fast`` with their last-seen time, then
  removes entries whose ``expires`` passed. The daemon calls it every
  :data:`FOLD_EVERY` seconds and always before ``gateway.on_timer()``, so the
  engine never expires a session on stale refresh times;
- :meth:`invalidate` (a ``gateway.fast_invalidators`` callback) folds and
  empties the table before any control op that changes state;
- :meth:`forget_session` drops a session's entries (both directions) whenever
  one of its packets meets the engine (a SYN/FIN/RST, a forward's session ended
  by static NAT, an expired entry), so no entry outlives a state change the
  engine just made; the engine's new entry is offered after.

The C table's times are CLOCK_MONOTONIC; the gateway's are that plus its
``advance`` offset (an ``advance`` invalidates first, so an entry never sees
two offsets).
"""

from __future__ import annotations

import heapq
from typing import Any, Optional

from natlab.engine.types import Side

FOLD_EVERY = 0.25
"""Seconds between reads of the C counters while entries are installed."""

Key = tuple[int, int, int, int, int, int]
"""(side, proto, src, sport, dst, dport) as packets arrive; side 0 inside, 1 outside."""


def key_of(entry: Any) -> Key:
    return (0 if entry.side is Side.INSIDE else 1, entry.proto, entry.src, entry.sport, entry.dst, entry.dport)


def session_of(entry: Any) -> tuple[int, int, int, int, int]:
    """(proto, inside address, inside port, remote address, remote port) of the entry's session."""
    if entry.side is Side.INSIDE:
        return (entry.proto, entry.src, entry.sport, entry.dst, entry.dport)
    return (entry.proto, entry.new_dst, entry.new_dport, entry.src, entry.sport)


def _rewrite(entry: Any) -> tuple[int, int, int, int]:
    return (entry.new_src, entry.new_sport, entry.new_dst, entry.new_dport)


def kernel_reassembly() -> dict[str, int]:
    """This namespace's IPv4 reassembly counters: af_packet ports (DPDK 22.11 joins a fanout
    group with PACKET_FANOUT_FLAG_DEFRAG) hand fragments to the kernel first."""
    try:
        with open("/proc/net/snmp") as f:
            lines = [line.split() for line in f if line.startswith("Ip:")]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    row = dict(zip(lines[0][1:], lines[1][1:]))
    return {k: int(row[k]) for k in ("ReasmReqds", "ReasmOKs", "ReasmFails", "ReasmTimeout") if k in row}


class FastCache:
    def __init__(self, gateway: Any, dataplane: Any, clock: Any) -> None:
        self.gateway = gateway
        self.dp = dataplane
        self.clock = clock
        self.entries: dict[Key, Any] = {}
        self.sessions: dict[tuple, set[Key]] = {}
        self._expiry: list[tuple[float, Key]] = []
        self.next_fold = float("inf")
        self.stats = {"offered": 0, "installed": 0, "refused_full": 0, "folded_packets": 0,
                      "forgotten": 0, "invalidations": 0}
        gateway.fast_invalidators.append(self.invalidate)
        gateway.stat_sources.append(self.counters)

    def offer(self, data: bytes | bytearray, side: Side, port: int, eth: bytes, mtu: int) -> None:
        """Install the engine's entry for the packet it just forwarded (if it offers one)."""
        entry = self.gateway.fast_entry(data, side)
        if entry is None:
            return
        self.stats["offered"] += 1
        key = key_of(entry)
        old = self.entries.get(key)
        if old is not None and _rewrite(old) != _rewrite(entry):
            self._remove(key)  # another translation: the old one's counters are its session's
        # else the install below updates the entry in place (the C add is an upsert that keeps
        # its counters): no removal, which with workers is a round trip to the owner per
        # packet, and a gap in which the flow's next packets miss (a flood never settled)
        expires = entry.expires - self.gateway.offset
        ok = self.dp.install(side=key[0], proto=entry.proto, src=entry.src, sport=entry.sport,
                             dst=entry.dst, dport=entry.dport, new_src=entry.new_src,
                             new_sport=entry.new_sport, new_dst=entry.new_dst,
                             new_dport=entry.new_dport, expires=expires, out_port=port, mtu=mtu,
                             eth=eth)
        if not ok:
            self.stats["refused_full"] += 1
            return
        self.stats["installed"] += 1
        self.entries[key] = entry
        self.sessions.setdefault(session_of(entry), set()).add(key)
        heapq.heappush(self._expiry, (expires, key))
        self.next_fold = min(self.next_fold, self.clock() + FOLD_EVERY)

    def fold(self) -> None:
        """Counters back into the engine; expired entries out."""
        if not self.entries:
            self.next_fold = float("inf")
            return
        self._fold_collected()
        offset, now = self.gateway.offset, self.clock()
        while self._expiry and self._expiry[0][0] <= now:
            expires, key = heapq.heappop(self._expiry)
            entry = self.entries.get(key)
            if entry is not None and entry.expires - offset == expires:
                self._remove(key)
        self.next_fold = now + FOLD_EVERY if self.entries else float("inf")

    def _fold_collected(self) -> None:
        """What the C table counted since the last collect, into the engine."""
        offset = self.gateway.offset
        for seen in self.dp.collect():
            entry = self.entries.get(seen.key)
            if entry is not None and seen.packets:
                self._fold_one(entry, seen, offset)

    def _fold_one(self, entry: Any, seen: Any, offset: float) -> None:
        self.stats["folded_packets"] += seen.packets
        self.gateway.fold_fast(entry, seen.packets, seen.nbytes, seen.last_seen + offset)

    def _remove(self, key: Key) -> None:
        entry = self.entries.pop(key)
        seen = self.dp.remove(key)
        if seen is not None and seen.packets:
            self._fold_one(entry, seen, self.gateway.offset)
        keys = self.sessions.get(session_of(entry))
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.sessions[session_of(entry)]

    def forget_session(self, session: tuple[int, int, int, int, int]) -> None:
        """Drop every entry of a session (proto, inside address, inside port, remote, port)."""
        for k in list(self.sessions.get(session, ())):
            self.stats["forgotten"] += 1
            self._remove(k)

    def forget(self, key: Key) -> None:
        """A packet of this 5-tuple goes to the engine with SYN/FIN/RST: its session's entries go."""
        entry = self.entries.get(key)
        if entry is None and key[0] == 0:
            sess = (key[1], key[2], key[3], key[4], key[5])
        elif entry is not None:
            sess = session_of(entry)
        else:
            return
        self.forget_session(sess)

    def invalidate(self) -> None:
        """Fold, then empty the table: the next packet of every flow meets the engine."""
        self.stats["invalidations"] += 1
        if not self.entries:
            return
        self._fold_collected()
        self.dp.clear()
        self.entries.clear()
        self.sessions.clear()
        self._expiry.clear()
        self.next_fold = float("inf")

    def counters(self) -> dict[str, Any]:
        c = self.dp.stats()
        return {"dpdk": {**c, **self.stats, "ports": self.dp.port_stats(),
                         "kernel_reassembly": kernel_reassembly()}}

    def find(self, key: Key) -> Optional[Any]:
        return self.entries.get(key)
