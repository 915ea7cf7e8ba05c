"""Small value types shared by the engine: sides, protocols, endpoints.

Addresses are plain ``int`` inside the engine (fast to hash and compare); the
value types format them for people.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from ipaddress import IPv4Address
from typing import NamedTuple, Union

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


def to_int(address: AddressLike) -> int:
    """An IPv4 address as an int, from str, int or IPv4Address."""
    if isinstance(address, int):
        return address
    return int(IPv4Address(address))


def to_str(address: int) -> str:
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
        return f"{IPv4Address(self.addr)}:{self.port}"


class Flow(NamedTuple):
    """A transport flow as seen on one side: protocol, source and destination."""

    proto: int
    src: Endpoint
    dst: Endpoint

    def __str__(self) -> str:
        name = Proto(self.proto).label if self.proto in Proto._value2member_map_ else str(self.proto)
        return f"{name} {self.src} -> {self.dst}"
