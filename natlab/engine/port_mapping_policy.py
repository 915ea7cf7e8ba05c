"""How a gateway answers port mapping requests (NAT-PMP, PCP, UPnP IGD): one frozen value.

``Policy.port_mapping`` holds it, so presets, topology overrides, ``natlab set``
and ``natlab explain`` treat it like every other knob; the gateway's port
mapping server (:mod:`natlab.portmap`) consumes it. Every protocol is off
unless a preset or an override turns it on: a NAT serves nothing it was not
told to. ``RemotePeer`` (a PCP FILTER) lives here too because the engine's
port mappings filter by it (:mod:`natlab.engine.port_mappings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Network
from typing import Annotated, Any

from pydantic import ConfigDict, Field

_STRICT = ConfigDict(extra="forbid")
Lifetime = Annotated[int, Field(ge=1, le=2**32 - 1, description="seconds")]
Port = Annotated[int, Field(ge=1, le=65535)]


class EpochOnReboot(str, Enum):
    """What a reboot does to the epoch clients use to notice lost state.

    RESET is what RFC 6886 section 3.6 and RFC 6887 section 8.5 require; KEEP is
    the bug of devices that keep counting, so clients never notice the flush.
    """

    RESET = "reset"
    KEEP = "keep"


@dataclass(frozen=True)
class PortMappingPolicy:
    """The knobs port mapping servers of real devices differ in.

    Lifetimes are clamped to [min_lifetime, max_lifetime] (RFC 6887 section 15
    suggests a minimum of 120 s and a 24 h maximum).
    """

    __pydantic_config__ = _STRICT
    natpmp: bool = False
    """Answer NAT-PMP (RFC 6886) on UDP 5351 of the inside address."""
    pcp: bool = False
    """Answer PCP (RFC 6887) on UDP 5351 of the inside address."""
    upnp: bool = False
    """Answer SSDP (239.255.255.250:1900) and UPnP IGD (HTTP 5000: WANIPConnection)."""
    upnp_igd_version: Annotated[int, Field(ge=1, le=2)] = 2
    """1 or 2: IGD:2 adds AddAnyPortMapping, DeletePortMappingRange, GetListOfPortMappings."""
    min_lifetime: Lifetime = 120
    max_lifetime: Lifetime = 86400
    allow_low_ports: bool = False
    """Whether external ports below 1024 may be mapped."""
    honour_requested_port: bool = True
    """Give the suggested external port when free; false: always pick another."""
    allow_third_party: bool = False
    """Map for another inside host (PCP THIRD_PARTY, UPnP NewInternalClient != sender)."""
    epoch_on_reboot: EpochOnReboot = EpochOnReboot.RESET
    max_mappings: Annotated[int, Field(ge=1)] = 1024
    """Table size; beyond it NO_RESOURCES / OUT_OF_RESOURCES / 728."""
    max_mappings_per_host: Annotated[int, Field(ge=1)] = 128
    """Per inside host; beyond it PCP USER_EX_QUOTA, NAT-PMP 4, UPnP 728."""
    max_pcp_filters: Annotated[int, Field(ge=0)] = 4
    """FILTER options per MAP; beyond it EXCESSIVE_REMOTE_PEERS (RFC 6887 section 13.3)."""
    upnp_same_port_required: bool = False
    """The device demands external == internal port (UPnP error 724)."""
    upnp_permanent_leases_only: bool = False
    """The device takes only lease 0 (UPnP error 725, IGD:1 devices)."""
    port_range: tuple[Port, Port] = (1024, 65535)
    """Where picked external ports come from, [low, high]."""
    pcp_interworking: bool = False
    """Double NAT (RFC 6970, IGD-PCP interworking): pass NAT-PMP and UPnP requests on to the
    upstream NAT's PCP server and answer with the outer mapping. Off, as on most home
    routers: a client behind two NATs learns only the inner mapping."""

    def __post_init__(self) -> None:
        if self.min_lifetime > self.max_lifetime:
            raise ValueError(f"min_lifetime ({self.min_lifetime}) is above max_lifetime ({self.max_lifetime})")
        if self.port_range[0] > self.port_range[1]:
            raise ValueError(f"port_range low ({self.port_range[0]}) is above high ({self.port_range[1]})")

    @property
    def serves(self) -> bool:
        """Whether any protocol is on (else the gateway opens no socket for them)."""
        return self.natpmp or self.pcp or self.upnp

    @classmethod
    def every_protocol(cls, **knobs: Any) -> "PortMappingPolicy":
        """NAT-PMP, PCP and UPnP all on, with ``knobs`` (tests, the in-memory twin)."""
        return cls(**{"natpmp": True, "pcp": True, "upnp": True, **knobs})


@dataclass(frozen=True)
class RemotePeer:
    """Remote peers a mapping admits (a PCP FILTER, RFC 6887 section 13.3); port 0: every port."""

    network: IPv4Network
    port: int = 0

    def admits(self, address: int, port: int) -> bool:
        net = self.network
        return (address & int(net.netmask)) == int(net.network_address) and self.port in (0, port)

    def __str__(self) -> str:
        where = str(self.network) if self.network.prefixlen < 32 else str(self.network.network_address)
        return f"{where}:{self.port}" if self.port else where
