"""Value types of the port mapping service: policy, mappings, intents, events, replies.

A ``PortMapping`` is one entry of the table a NAT-PMP, PCP or UPnP IGD client
asked for; the table is protocol-neutral (one entry per external protocol and
port) so that a UPnP listing shows PCP mappings too. The service never touches
the datapath: it returns intents (``MapPort``, ``UnmapPort``) for the engine to
carry out (:mod:`natlab.engine.port_mappings`), events for people, and replies
for the I/O shell to send. ``PortMappingPolicy``, ``EpochOnReboot`` and
``RemotePeer`` are the engine's values (``Policy.port_mapping``), re-exported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional, Union

from natlab.engine.port_mapping_policy import EpochOnReboot, PortMappingPolicy, RemotePeer
from natlab.engine.types import Endpoint, Proto

__all__ = [
    "Datagram", "EpochOnReboot", "Granted", "HttpReply", "Intent", "MapPort", "MappingKind",
    "MappingRequest", "Outcome", "PortChoice", "PortMapEvent", "PortMapEventKind", "PortMapping",
    "PortMappingPolicy", "Refused", "Refusal", "RemotePeer", "Reply", "UnmapPort",
]


class MappingKind(str, Enum):
    """Which protocol made a mapping; a mapping belongs to its protocol."""

    NATPMP = "natpmp"
    PCP = "pcp"
    UPNP = "upnp"


class PortChoice(str, Enum):
    """How firmly a request names its external port."""

    SUGGESTED = "suggested"
    """A hint (NAT-PMP, PCP, AddAnyPortMapping); another port if not free."""
    REQUIRED = "required"
    """That port or failure (PCP PREFER_FAILURE); honour_requested_port applies."""
    FIXED = "fixed"
    """The port is the mapping's identity (UPnP AddPortMapping)."""


@dataclass(frozen=True)
class PortMapping:
    """One entry: inbound ``protocol`` to ``external_port`` goes to ``internal``.

    ``expires`` is None for a UPnP permanent lease. ``filters`` empty admits
    every remote peer.
    """

    kind: MappingKind
    protocol: Proto
    internal: Endpoint
    external_port: int
    expires: Optional[float]
    created: float
    requester: int
    nonce: Optional[bytes] = None
    filters: tuple[RemotePeer, ...] = ()
    description: str = ""
    enabled: bool = True

    def remaining(self, now: float) -> Optional[int]:
        """Whole seconds left (None: permanent)."""
        if self.expires is None:
            return None
        return max(0, int(self.expires - now + 0.5))


@dataclass(frozen=True)
class MappingRequest:
    """What any protocol asks the table for; ``lifetime`` None means permanent."""

    kind: MappingKind
    protocol: Proto
    internal: Endpoint
    external_port: int
    lifetime: Optional[int]
    requester: int
    choice: PortChoice = PortChoice.SUGGESTED
    nonce: Optional[bytes] = None
    filters: tuple[RemotePeer, ...] = ()
    description: str = ""
    enabled: bool = True


class Refusal(str, Enum):
    """Why the table refused a request; each protocol maps it to its own code."""

    NOT_AUTHORIZED = "not-authorized"
    NONCE_MISMATCH = "nonce-mismatch"
    OWNED_BY_OTHER = "owned-by-other-protocol"
    LOW_PORT = "low-port"
    PORT_TAKEN = "port-taken"
    PORT_IN_USE_ELSEWHERE = "port-in-use-elsewhere"
    NO_PORTS = "no-ports"
    QUOTA = "quota"
    TABLE_FULL = "table-full"


@dataclass(frozen=True)
class Granted:
    mapping: PortMapping
    created: bool


@dataclass(frozen=True)
class Refused:
    reason: Refusal


@dataclass(frozen=True)
class MapPort:
    """Intent: install or update the engine's explicit mapping (``Engine.map_port``)."""

    mapping: PortMapping


@dataclass(frozen=True)
class UnmapPort:
    """Intent: remove the inbound mapping."""

    mapping: PortMapping


Intent = Union[MapPort, UnmapPort]


class PortMapEventKind(str, Enum):
    CREATED = "portmap-created"
    REFRESHED = "portmap-refreshed"
    DELETED = "portmap-deleted"
    EXPIRED = "portmap-expired"
    FLUSHED = "portmap-flushed"
    REFUSED = "portmap-refused"
    REBOOTED = "portmap-rebooted"


@dataclass(frozen=True)
class PortMapEvent:
    kind: PortMapEventKind
    time: float
    protocol: Optional[MappingKind] = None
    mapping: Optional[PortMapping] = None
    detail: str = ""


@dataclass(frozen=True)
class Datagram:
    """A UDP payload to send: to the sender unless ``to`` is set, after ``delay`` s."""

    data: bytes
    to: Optional[Endpoint] = None
    delay: float = 0.0


@dataclass(frozen=True)
class HttpReply:
    """An HTTP answer for the shell to frame (status line, Content-Length)."""

    status: int
    body: bytes = b""
    content_type: str = 'text/xml; charset="utf-8"'


Reply = Union[Datagram, HttpReply]


@dataclass(frozen=True)
class Outcome:
    """What one call into the service produced. Empty means dropped (and counted)."""

    replies: tuple[Reply, ...] = ()
    intents: tuple[Intent, ...] = ()
    events: tuple[PortMapEvent, ...] = field(default=())

    def __add__(self, other: "Outcome") -> "Outcome":
        return Outcome(self.replies + other.replies, self.intents + other.intents,
                       self.events + other.events)
