"""Small value types shared by the engine: sides, protocols, endpoints, flow keys and
the addresses a NAT owns.

Addresses are plain ``int`` inside the engine (fast to hash and compare); the
value types format them for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from ipaddress import IPv4Address
from typing import Mapping, NamedTuple, Optional, Union

AddressLike = Union[str, int, IPv4Address]


class Side(str, Enum):
    """Which side of the NAT a packet arrived on."""

    INSIDE = "inside"
    OUTSIDE = "outside"


class Proto(IntEnum):
    """IP protocol numbers the engine translates."""

    ICMP = 1
    TCP = 6
    UDP = 17

    @property
    def label(self) -> str:
        return self.name.lower()


_PROTO_NUMBERS = frozenset(int(p) for p in Proto)
_PROTO_LABELS = {int(p): p.label for p in Proto}


def proto_label(proto: int) -> str:
    """``Proto(proto).label`` ("udp", "tcp", "icmp"), from a table; ValueError for another number."""
    label = _PROTO_LABELS.get(proto)
    return label if label is not None else Proto(proto).label


def to_int(address: AddressLike) -> int:
    """An IPv4 address as an int, from str, int or IPv4Address."""
    if isinstance(address, int):
        return address
    return int(IPv4Address(address))


def to_str(address: int) -> str:
    """Dotted quad of an int address (as ``str(IPv4Address(address))``, without building one)."""
    if address.__class__ is int and 0 <= address <= 0xFFFFFFFF:
        return f"{address >> 24}.{address >> 16 & 255}.{address >> 8 & 255}.{address & 255}"
    return str(IPv4Address(address))


def is_unicast(address: int) -> bool:
    """A host could have it: not 0.0.0.0/8, multicast (224/4), reserved (240/4) or broadcast.

    A NAT never originates a packet to or from anything else (RFC 1812 4.3.2.7: no ICMP
    error about a datagram sent to a broadcast or multicast address, or from one).
    """
    return (address >> 24) != 0 and (address >> 28) < 0xE


class Endpoint(NamedTuple):
    """An (address, port) pair; for ICMP queries the port is the identifier."""

    addr: int
    port: int

    @classmethod
    def of(cls, address: AddressLike, port: int) -> "Endpoint":
        return cls(to_int(address), port)

    @property
    def ip(self) -> IPv4Address:
        return IPv4Address(self.addr)

    def __str__(self) -> str:
        return f"{to_str(self.addr)}:{self.port}"


class Flow(NamedTuple):
    """A transport flow as seen on one side: protocol, source and destination."""

    proto: int
    src: Endpoint
    dst: Endpoint

    def __str__(self) -> str:
        name = Proto(self.proto).label if self.proto in _PROTO_NUMBERS else str(self.proto)
        return f"{name} {self.src} -> {self.dst}"


class FlowKey(NamedTuple):
    """A flow as the NAT keys it: protocol, internal endpoint X:x, remote endpoint Y:y
    (RFC 4787 section 4.1 terms; for ICMP queries x is the identifier, y is 0).

    :meth:`natlab.engine.policy.Dependency.key` trims a flow to a mapping key; the parts
    a dependency ignores are ``None``. A NamedTuple equals and hashes as the plain tuple
    of its fields, so tables store FlowKey values while the per-packet path probes them
    with a bare ``(proto, X, x, Y, y)`` tuple and allocates no FlowKey per packet.
    """

    proto: int
    x_addr: int
    x_port: int
    y_addr: Optional[int] = None
    y_port: Optional[int] = None

    @property
    def internal(self) -> Endpoint:
        return Endpoint(self.x_addr, self.x_port)

    @property
    def remote_label(self) -> str:
        """What the key keeps of the remote: "*" (nothing), "Y" or "Y:y" (as mapping tables show)."""
        if self.y_addr is None:
            return "*"
        if self.y_port is None:
            return to_str(self.y_addr)
        return f"{to_str(self.y_addr)}:{self.y_port}"


@dataclass(frozen=True, slots=True)
class Addresses:
    """The external addresses a NAT answers for: its pool (RFC 4787 REQ-2) and its
    static 1:1 externals. A value, rebuilt whenever the policy or the pool changes;
    the dicts are never changed after it is made."""

    pool: tuple[int, ...]
    """The pool, in configured order (the first also carries port forwards)."""
    pool_set: frozenset[int]
    static_out: Mapping[int, int]
    """Static 1:1 NAT, internal address -> external address."""
    static_in: Mapping[int, int]
    """Static 1:1 NAT, external address -> internal address."""

    @classmethod
    def of(cls, pool: tuple[int, ...], static_out: Mapping[int, int]) -> "Addresses":
        return cls(pool, frozenset(pool), dict(static_out), {ext: i for i, ext in static_out.items()})

    def owns(self, address: int) -> bool:
        """Whether the outside must route ``address`` to this NAT (pool or static external)."""
        return address in self.pool_set or address in self.static_in

    @property
    def external(self) -> tuple[int, ...]:
        """The pool, then static externals: every address the NAT owns, in order."""
        return self.pool + tuple(self.static_in)
