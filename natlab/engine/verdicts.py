"""What the engine says about a packet: verdicts, events and packets it emits.

Packet outcomes are values, never exceptions: ``Forward`` (send these rewritten
bytes on), ``Hairpin`` (send them back out the inside), ``Drop`` (with a reason,
always counted). Each verdict carries the events the packet caused and any
packets the engine itself emits (released fragments, RST or ICMP answers).
Verdicts are NamedTuples because one is made for every packet.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, Optional, Union

from natlab.engine.types import Side


class DropReason(str, Enum):
    """Why a packet was dropped; each reason has its own counter."""

    MALFORMED = "malformed"
    UNSUPPORTED_PROTOCOL = "unsupported-protocol"
    NO_MAPPING = "no-mapping"
    NOT_OURS = "not-ours"
    """Inbound to an address the NAT does not own (neither pool nor static 1:1 external)."""
    FILTERED = "filtered"
    PORT_EXHAUSTED = "port-exhausted"
    LIMIT_REACHED = "limit-reached"
    SESSION_LIMIT = "session-limit"
    HAIRPIN_DISABLED = "hairpin-disabled"
    ICMP_DISABLED = "icmp-disabled"
    ICMP_ERROR_UNMATCHED = "icmp-error-unmatched"
    FRAGMENTS_DISABLED = "fragments-disabled"
    FRAGMENT_HELD = "fragment-held"
    FRAGMENT_OVERFLOW = "fragment-overflow"
    UNSOLICITED_SYN = "unsolicited-syn"


class Emit(NamedTuple):
    """A packet the engine originates, to be sent out on ``side``."""

    side: Side
    data: bytes


class Forward(NamedTuple):
    """Send ``data`` (the rewritten packet) on in its direction of travel."""

    data: Union[bytes, bytearray]
    events: tuple["Event", ...] = ()
    emits: tuple[Emit, ...] = ()


class Hairpin(NamedTuple):
    """Send ``data`` back out the inside: it was addressed to one of our external endpoints."""

    data: Union[bytes, bytearray]
    events: tuple["Event", ...] = ()
    emits: tuple[Emit, ...] = ()


class Drop(NamedTuple):
    """Drop the packet, for ``reason``."""

    reason: DropReason
    events: tuple["Event", ...] = ()
    emits: tuple[Emit, ...] = ()


Verdict = Union[Forward, Hairpin, Drop]


class Tick(NamedTuple):
    """What :meth:`Engine.expire` returns: events and packets due by ``now``."""

    events: tuple["Event", ...] = ()
    emits: tuple[Emit, ...] = ()


class EventKind(str, Enum):
    MAPPING_CREATED = "mapping-created"
    MAPPING_REFRESHED = "mapping-refreshed"
    MAPPING_EXPIRED = "mapping-expired"
    MAPPING_EVICTED = "mapping-evicted"
    MAPPINGS_FLUSHED = "mappings-flushed"
    FILTERED = "filtered"
    DROPPED = "dropped"
    PORT_MAPPING_CREATED = "port-mapping-created"
    PORT_MAPPING_REFRESHED = "port-mapping-refreshed"
    PORT_MAPPING_DELETED = "port-mapping-deleted"
    PORT_MAPPING_EXPIRED = "port-mapping-expired"
    PORT_MAPPING_REFUSED = "port-mapping-refused"
    """NAT-PMP/PCP/UPnP mappings (:mod:`natlab.engine.port_mappings`)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something the engine did, for logs and ``natlab events``.

    ``mapping`` is the mapping's description ("udp 192.168.1.2:5000 ->
    203.0.113.1:5000"); ``detail`` says more where there is more to say.
    """

    kind: EventKind
    at: float
    protocol: str = ""
    internal: str = ""
    external: str = ""
    remote: str = ""
    reason: Optional[str] = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The fields in order, ``kind`` as its value, empty ones left out (what
        ``dataclasses.asdict`` gives, without its deep copy: one of these is made for
        every event a gateway records, a new mapping's included)."""
        out: dict[str, Any] = {"kind": self.kind.value, "at": self.at}
        if self.at is None or self.at == "":
            del out["at"]
        for name in _OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None and value != "":
                out[name] = value
        return out


_OPTIONAL_FIELDS = ("protocol", "internal", "external", "remote", "reason", "detail")


def drop_records(verdict: "Drop", side: Side, packet: str) -> list[dict[str, Any]]:
    """A drop as event records: the engine's own events, the one(s) telling the drop
    carrying ``side`` and the ``packet`` summary; a bare ``dropped`` if none told it."""
    extra = {"side": side.value, "packet": packet}
    records, described = [], False
    for event in verdict.events:
        entry = event.to_dict()
        if event.kind in (EventKind.DROPPED, EventKind.FILTERED):
            entry.update(extra)
            described = True
        records.append(entry)
    if not described:
        reason = getattr(verdict.reason, "value", str(verdict.reason))
        records.append({"kind": EventKind.DROPPED.value, "reason": reason, **extra})
    return records
