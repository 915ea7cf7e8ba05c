"""Value types of the port mapping service: policy, mappings, intents, events, replies.

Not yet served by gateways: nothing here is wired into the engine or the
gateway daemon (phase 2 does that).

A ``PortMapping`` is one entry of the table a NAT-PMP, PCP or UPnP IGD client
asked for; the table is protocol-neutral (one entry per external protocol and
port) so that a UPnP listing shows PCP mappings too. The service never touches
the datapath: it returns intents (``MapPort``, ``UnmapPort``) for the engine to
carry out, events for people, and replies for the I/O shell to send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Network
from typing import Optional, Union

from natlab.engine.types import Endpoint, Proto


class MappingKind(str, Enum):
    """Which protocol made a mapping; a mapping belongs to its protocol."""

    NATPMP = "natpmp"
    PCP = "pcp"
    UPNP = "upnp"


class EpochOnReboot(str, Enum):
    """What a reboot does to the epoch clients use to notice lost state.

    RESET is what RFC 6886 section 3.6 and RFC 6887 section 8.5 require; KEEP is
    the bug of devices that keep counting, so clients never notice the flush.
    """

    RESET = "reset"
    KEEP = "keep"


@dataclass(frozen=True)
class PortMappingPolicy:
    """How one gateway answers port mapping requests: the knobs devices differ in.

    Lifetimes are clamped to [min_lifetime, max_lifetime] (RFC 6887 section 15
    suggests a minimum of 120 s and a 24 h maximum).
    """

    natpmp: bool = True
    """Answer NAT-PMP (RFC 6886) on UDP 5351."""
    pcp: bool = True
    """Answer PCP (RFC 6887) on UDP 5351."""
    upnp: bool = True
    """Answer SSDP and UPnP IGD SOAP (WANIPConnection)."""
    upnp_igd_version: int = 2
    """1 or 2: IGD:2 adds AddAnyPortMapping, DeletePortMappingRange, GetListOfPortMappings."""
    min_lifetime: int = 120
    max_lifetime: int = 86400
    allow_low_ports: bool = False
    """Whether external ports below 1024 may be mapped."""
    honour_requested_port: bool = True
    """Give the suggested external port when free; otherwise always pick one."""
    allow_third_party: bool = False
    """Map for another inside host (PCP THIRD_PARTY, UPnP NewInternalClient != sender)."""
    epoch_on_reboot: EpochOnReboot = EpochOnReboot.RESET
    max_mappings: int = 1024
    """Table size; beyond it NO_RESOURCES / OUT_OF_RESOURCES / 728."""
    max_mappings_per_host: int = 128
    """Per inside host; beyond it PCP USER_EX_QUOTA, NAT-PMP 4, UPnP 728."""
    max_pcp_filters: int = 4
    """FILTER options per MAP; beyond it EXCESSIVE_REMOTE_PEERS (RFC 6887 13.3)."""
    upnp_same_port_required: bool = False
    """Device demands external == internal port (UPnP error 724)."""
    upnp_permanent_leases_only: bool = False
    """Device takes only lease 0 (UPnP error 725, IGD:1 devices)."""
    port_range: tuple[int, int] = (1024, 65535)
    """Where picked external ports come from."""


class PortChoice(str, Enum):
    """How firmly a request names its external port."""

    SUGGESTED = "suggested"
    """A hint (NAT-PMP, PCP, AddAnyPortMapping); another port if not free."""
    REQUIRED = "required"
    """That port or failure (PCP PREFER_FAILURE); honour_requested_port applies."""
    FIXED = "fixed"
    """The port is the mapping's identity (UPnP AddPortMapping)."""


@dataclass(frozen=True)
class RemotePeer:
    """Remote peers a mapping admits (PCP FILTER); port 0 means every port."""

    network: IPv4Network
    port: int = 0


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
    """Intent: install or update the inbound mapping (engine mapping kind, phase 2)."""

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
