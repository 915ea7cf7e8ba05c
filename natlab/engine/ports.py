"""External address and port assignment (RFC 4787 REQ-2, REQ-3, REQ-4; CGN blocks).

Theory of operation
-------------------
For a new mapping of internal endpoint X:x the allocator first orders the pool's
addresses by the pooling behaviour (REQ-2): *paired* pins an internal address to
one external address; *soft-paired* prefers that address but falls back to the
others when its ports run out; *arbitrary* picks afresh each time. On each
candidate address it then picks a port by the assignment behaviour (REQ-3),
keeping x's parity when asked (REQ-4) -- best effort: when only ports of the
other parity are left it takes one and counts a ``parity_fallbacks``. A new
internal address is paired with an address that still has free ports.

With ``port_block`` set, each internal address owns blocks of ports (RFC 6888
REQ-4, RFC 7422) and picks only inside them. A block is *free*, then *heating*
(its owner's new mappings take ports from it), then *cooling* (it had no port
left: no new mappings, it waits for its mappings to time out), then free again
once its last mapping ends (``release``), so new subscribers can have it.

Whether a port is free is asked of the caller (``taken``), which owns the table.
All randomness comes from the injected ``random.Random``.
"""

from __future__ import annotations

import random
from typing import Callable, Iterator, Optional, Sequence

from natlab.engine.counters import Counters
from natlab.engine.policy import Policy, Pooling, PortAssignment
from natlab.engine.types import AddressLike, to_int
from natlab.errors import ConfigError

Taken = Callable[[int, int, int], bool]
"""taken(proto, external_addr, port) -> is that external endpoint in use?"""

_RANDOM_TRIES = 32


class PortAllocator:
    """Chooses external endpoints for new mappings."""

    def __init__(self, policy: Policy, pool: tuple[int, ...], rng: random.Random,
                 counters: Optional[Counters] = None) -> None:
        self.policy = policy
        self.pool = pool
        self.rng = rng
        self.counters = counters if counters is not None else Counters()
        self._paired: dict[int, int] = {}
        self._next: dict[tuple[int, int], int] = {}
        self._used: dict[tuple[int, int], int] = {}
        """Ports in use per (proto, external address), for pairing with room."""
        self._blocks: dict[int, list[tuple[int, int]]] = {}
        self._block_owner: dict[tuple[int, int], int] = {}
        self._block_used: dict[tuple[int, int], int] = {}
        self._cooling: set[tuple[int, int]] = set()

    # -- pooling (REQ-2) -------------------------------------------------------
    def addresses_for(self, internal_addr: int, proto: int = 17) -> list[int]:
        """Candidate external addresses for a new mapping, in order of preference."""
        pooling = self.policy.pooling
        if len(self.pool) == 1:
            return [self.pool[0]]
        if pooling is Pooling.ARBITRARY:
            first = self.rng.choice(self.pool)
            return [first] + [a for a in self.pool if a != first]
        paired = self._paired.get(internal_addr)
        if paired is None or paired not in self.pool:
            roomy = [a for a in self.pool if self._has_room(proto, a)]
            paired = self.rng.choice(roomy or self.pool)
            self._paired[internal_addr] = paired
        if pooling is Pooling.PAIRED:
            return [paired]
        return [paired] + [a for a in self.pool if a != paired]

    def _has_room(self, proto: int, addr: int) -> bool:
        """Could a new internal address get a port on ``addr``?"""
        size = self.policy.port_block
        if size:
            owned = sum(1 for a, _ in self._block_owner if a == addr)
            return owned < len(self.policy.port_range) // size
        return self._used.get((proto, addr), 0) < len(self.policy.port_range)

    # -- ports (REQ-3, REQ-4) --------------------------------------------------
    def allocate(
        self, proto: int, internal_addr: int, internal_port: int, taken: Taken
    ) -> Optional[tuple[int, int, bool]]:
        """(external_addr, external_port, evicts) for a new mapping, or None if exhausted.

        ``evicts`` is True when port overloading reuses a port in use: the caller
        must evict that older mapping first.
        """
        got = self._choose(proto, internal_addr, internal_port, taken)
        if got is not None:
            key = (proto, got[0])
            self._used[key] = self._used.get(key, 0) + 1
            if self.policy.port_block:
                self._note_block(got[0], got[1])
        return got

    def reserve(self, proto: int, addr: int, port: int) -> tuple[int, int, bool]:
        """Take ``port`` on ``addr`` (the caller checked it is free): a PCP PEER's suggested port."""
        key = (proto, addr)
        self._used[key] = self._used.get(key, 0) + 1
        return addr, port, False

    def release(self, addr: int, port: int, proto: int) -> None:
        """A mapping on (addr, port) ended: its port, and its block once empty, are free."""
        key = (proto, addr)
        left = self._used.get(key, 0) - 1
        if left > 0:
            self._used[key] = left
        else:
            self._used.pop(key, None)
        block = self._block_of(addr, port)
        if block is None or block not in self._block_used:
            return
        self._block_used[block] -= 1
        if self._block_used[block] <= 0:
            owner = self._block_owner.pop(block)
            del self._block_used[block]
            self._cooling.discard(block)
            self._blocks[owner].remove(block)
            if not self._blocks[owner]:
                del self._blocks[owner]
            self.counters.blocks_released += 1

    def _choose(self, proto: int, internal_addr: int, internal_port: int, taken: Taken):
        for addr in self.addresses_for(internal_addr, proto):
            if self.policy.port_block:
                port = self._in_blocks(proto, addr, internal_addr, internal_port, taken)
                if port is not None:
                    return addr, port, False
                continue
            mode = self.policy.port_assignment
            in_range = self.policy.port_range.low <= internal_port <= self.policy.port_range.high
            if mode is PortAssignment.OVERLOAD and in_range:
                return addr, internal_port, taken(proto, addr, internal_port)
            if mode is PortAssignment.PRESERVE and in_range and not taken(proto, addr, internal_port):
                return addr, internal_port, False
            port = self._pick(proto, addr, internal_port, taken, self._ranges(internal_port))
            if port is not None:
                return addr, port, False
        return None

    def _ranges(self, internal_port: int) -> list[tuple[int, int]]:
        rng = self.policy.port_range
        return [(rng.low, rng.high)]

    def _pick(
        self,
        proto: int,
        addr: int,
        internal_port: int,
        taken: Taken,
        ranges: list[tuple[int, int]],
    ) -> Optional[int]:
        """A free port by the assignment mode, within ``ranges``; parity kept if asked and
        possible (REQ-4 is a SHOULD: the other parity is better than no mapping)."""
        port = self._pick_once(proto, addr, internal_port, taken, ranges, self.policy.port_parity)
        if port is None and self.policy.port_parity:
            port = self._pick_once(proto, addr, internal_port, taken, ranges, False)
            if port is not None:
                self.counters.parity_fallbacks += 1
        return port

    def _pick_once(self, proto, addr, internal_port, taken, ranges, parity: bool) -> Optional[int]:
        sequential = self.policy.port_assignment is PortAssignment.SEQUENTIAL
        for low, high in ranges:
            if sequential:
                start = self._next.get((proto, addr), low)
                if not low <= start <= high:
                    start = low
            else:
                start = self.rng.randint(low, high)
                for _ in range(_RANDOM_TRIES):
                    port = self._with_parity(start, internal_port, low, high, parity)
                    if port is not None and not taken(proto, addr, port):
                        return port
                    start = self.rng.randint(low, high)
            for port in self._scan(start, low, high, internal_port, parity):
                if not taken(proto, addr, port):
                    if sequential:
                        self._next[(proto, addr)] = port + 1 if port < high else low
                    return port
        return None

    def _with_parity(self, port: int, internal_port: int, low: int, high: int, parity: bool) -> Optional[int]:
        if not parity or (port ^ internal_port) & 1 == 0:
            return port
        port ^= 1
        return port if low <= port <= high else None

    def _scan(self, start: int, low: int, high: int, internal_port: int, parity: bool) -> Iterator[int]:
        """Every port of the range once, from ``start`` upward with wrap, parity kept."""
        span = high - low + 1
        for i in range(span):
            port = low + (start - low + i) % span
            if not parity or (port ^ internal_port) & 1 == 0:
                yield port

    # -- CGN port blocks (RFC 6888 REQ-2, RFC 7422) ------------------------------
    def _in_blocks(
        self, proto: int, addr: int, internal_addr: int, internal_port: int, taken: Taken
    ) -> Optional[int]:
        size = self.policy.port_block or 1
        heating = [b for b in self._blocks.get(internal_addr, []) if b[0] == addr and b not in self._cooling]
        mode = self.policy.port_assignment
        for block in heating:
            low, high = block[1], block[1] + size - 1
            if mode in (PortAssignment.PRESERVE, PortAssignment.OVERLOAD):
                if low <= internal_port <= high and not taken(proto, addr, internal_port):
                    return internal_port
        for block in heating:
            port = self._pick(proto, addr, internal_port, taken, [(block[1], block[1] + size - 1)])
            if port is not None:
                return port
            self._cooling.add(block)  # full: it only waits for its mappings to end now
        block = self._new_block(addr, internal_addr)
        if block is None:
            return None
        return self._pick(proto, addr, internal_port, taken, [block])

    def _new_block(self, addr: int, internal_addr: int) -> Optional[tuple[int, int]]:
        size = self.policy.port_block or 1
        rng = self.policy.port_range
        starts = list(range(rng.low, rng.high - size + 2, size))
        free = [s for s in starts if (addr, s) not in self._block_owner]
        if not free:
            return None
        start = free[0] if self.policy.port_assignment is PortAssignment.SEQUENTIAL else self.rng.choice(free)
        self._block_owner[(addr, start)] = internal_addr
        self._block_used[(addr, start)] = 0
        self._blocks.setdefault(internal_addr, []).append((addr, start))
        return start, start + size - 1

    def _block_of(self, addr: int, port: int) -> Optional[tuple[int, int]]:
        size = self.policy.port_block
        if not size:
            return None
        low = self.policy.port_range.low
        return addr, low + (port - low) // size * size

    def _note_block(self, addr: int, port: int) -> None:
        block = self._block_of(addr, port)
        if block is not None and block in self._block_used:
            self._block_used[block] += 1

    def block_state(self, addr: int, start: int) -> str:
        """"free", "heating" or "cooling" (for tests and reports)."""
        if (addr, start) not in self._block_owner:
            return "free"
        return "cooling" if (addr, start) in self._cooling else "heating"

    def blocks_of(self, internal_addr: int) -> list[tuple[int, int]]:
        """(external_addr, first_port) of every block an internal address holds."""
        return list(self._blocks.get(internal_addr, []))


def checked_pool(pool: Sequence[AddressLike]) -> tuple[int, ...]:
    """The pool as distinct int addresses; an empty pool is a configuration error."""
    if not pool:
        raise ConfigError("a NAT needs at least one external address", got=list(pool),
                          hint="give the gateway a pool of one or more addresses")
    return tuple(dict.fromkeys(to_int(a) for a in pool))
