"""External address and port assignment (RFC 4787 REQ-2, REQ-3, REQ-4; CGN blocks).

Theory of operation
-------------------
For a new mapping of internal endpoint X:x the allocator first orders the pool's
addresses by the pooling behaviour (REQ-2): *paired* pins an internal address to
one external address; *soft-paired* prefers that address but falls back to the
others when its ports run out; *arbitrary* picks afresh each time. On each
candidate address it then picks a port by the assignment behaviour (REQ-3),
keeping x's parity when asked (REQ-4). With ``port_block`` set, each internal
address owns blocks of ports (RFC 6888/7422 style) and picks only inside them.

Whether a port is free is asked of the caller (``taken``), which owns the table.
All randomness comes from the injected ``random.Random``.
"""

from __future__ import annotations

import random
from typing import Callable, Iterator, Optional, Sequence

from natlab.engine.policy import Policy, Pooling, PortAssignment
from natlab.engine.types import AddressLike, to_int
from natlab.errors import ConfigError

Taken = Callable[[int, int, int], bool]
"""taken(proto, external_addr, port) -> is that external endpoint in use?"""

_RANDOM_TRIES = 32


class PortAllocator:
    """Chooses external endpoints for new mappings."""

    def __init__(self, policy: Policy, pool: tuple[int, ...], rng: random.Random) -> None:
        self.policy = policy
        self.pool = pool
        self.rng = rng
        self._paired: dict[int, int] = {}
        self._next: dict[tuple[int, int], int] = {}
        self._blocks: dict[int, list[tuple[int, int]]] = {}
        self._block_owner: dict[tuple[int, int], int] = {}

    # -- pooling (REQ-2) -------------------------------------------------------
    def addresses_for(self, internal_addr: int) -> list[int]:
        """Candidate external addresses for a new mapping, in order of preference."""
        pooling = self.policy.pooling
        if len(self.pool) == 1:
            return [self.pool[0]]
        if pooling is Pooling.ARBITRARY:
            first = self.rng.choice(self.pool)
            return [first] + [a for a in self.pool if a != first]
        paired = self._paired.get(internal_addr)
        if paired is None or paired not in self.pool:
            paired = self.rng.choice(self.pool)
            self._paired[internal_addr] = paired
        if pooling is Pooling.PAIRED:
            return [paired]
        return [paired] + [a for a in self.pool if a != paired]

    # -- ports (REQ-3, REQ-4) --------------------------------------------------
    def allocate(
        self, proto: int, internal_addr: int, internal_port: int, taken: Taken
    ) -> Optional[tuple[int, int, bool]]:
        """(external_addr, external_port, evicts) for a new mapping, or None if exhausted.

        ``evicts`` is True when port overloading reuses a port in use: the caller
        must evict that older mapping first.
        """
        for addr in self.addresses_for(internal_addr):
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
        """A free port by the assignment mode, within ``ranges``, parity kept if asked."""
        sequential = self.policy.port_assignment is PortAssignment.SEQUENTIAL
        for low, high in ranges:
            if sequential:
                start = self._next.get((proto, addr), low)
                if not low <= start <= high:
                    start = low
            else:
                start = self.rng.randint(low, high)
                for _ in range(_RANDOM_TRIES):
                    port = self._with_parity(start, internal_port, low, high)
                    if port is not None and not taken(proto, addr, port):
                        return port
                    start = self.rng.randint(low, high)
            for port in self._scan(start, low, high, internal_port):
                if not taken(proto, addr, port):
                    if sequential:
                        self._next[(proto, addr)] = port + 1 if port < high else low
                    return port
        return None

    def _with_parity(self, port: int, internal_port: int, low: int, high: int) -> Optional[int]:
        if not self.policy.port_parity or (port ^ internal_port) & 1 == 0:
            return port
        port ^= 1
        return port if low <= port <= high else None

    def _scan(self, start: int, low: int, high: int, internal_port: int) -> Iterator[int]:
        """Every port of the range once, from ``start`` upward with wrap, parity kept."""
        span = high - low + 1
        for i in range(span):
            port = low + (start - low + i) % span
            if not self.policy.port_parity or (port ^ internal_port) & 1 == 0:
                yield port

    # -- CGN port blocks (RFC 6888 REQ-2, RFC 7422) ------------------------------
    def _in_blocks(
        self, proto: int, addr: int, internal_addr: int, internal_port: int, taken: Taken
    ) -> Optional[int]:
        blocks = [b for b in self._blocks.get(internal_addr, []) if b[0] == addr]
        ranges = [(start, start + self.policy.port_block - 1) for _, start in blocks]
        mode = self.policy.port_assignment
        for low, high in ranges:
            if mode in (PortAssignment.PRESERVE, PortAssignment.OVERLOAD):
                if low <= internal_port <= high and not taken(proto, addr, internal_port):
                    return internal_port
        port = self._pick(proto, addr, internal_port, taken, ranges) if ranges else None
        if port is not None:
            return port
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
        self._blocks.setdefault(internal_addr, []).append((addr, start))
        return start, start + size - 1

    def blocks_of(self, internal_addr: int) -> list[tuple[int, int]]:
        """(external_addr, first_port) of every block an internal address holds."""
        return list(self._blocks.get(internal_addr, []))


def checked_pool(pool: Sequence[AddressLike]) -> tuple[int, ...]:
    """The pool as distinct int addresses; an empty pool is a configuration error."""
    if not pool:
        raise ConfigError("a NAT needs at least one external address", got=list(pool),
                          hint="give the gateway a pool of one or more addresses")
    return tuple(dict.fromkeys(to_int(a) for a in pool))
