"""The NAT policy: one frozen value in RFC 4787 / 5382 / 5508 vocabulary.

Theory of operation
-------------------
Every behaviour a NAT can show is a field here, with the RFC's recommended value
as its default, so ``Policy()`` *is* what RFC 4787 asks for. Presets in
``behaviours/*.yaml`` expand to this value (see :mod:`natlab.presets`); backends
consume only this value. Enum values are spelled as users write them in YAML.

The classes are plain frozen dataclasses; :func:`natlab.presets.policy_from_dict`
validates untrusted input into them with pydantic (unknown keys rejected).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Optional

from pydantic import ConfigDict, Field

from natlab.engine.types import FlowKey

_STRICT = ConfigDict(extra="forbid")

Seconds = Annotated[float, Field(gt=0, description="seconds")]
Port = Annotated[int, Field(ge=1, le=65535)]


class Dependency(str, Enum):
    """How much of the remote endpoint a mapping or filter depends on.

    One enum serves both mapping (RFC 4787 section 4.1, REQ-1) and filtering
    (section 5, REQ-8): it says how a flow is trimmed to a lookup key.
    """

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"

    def key(self, flow: FlowKey) -> FlowKey:
        """``flow`` trimmed to what this dependency keeps of the remote endpoint Y:y:
        nothing (endpoint-independent), Y (address-dependent) or Y:y. Flows with equal
        keys share a mapping (REQ-1) or pass the same filter (REQ-8)."""
        if self is _EI:  # every new mapping asks: tuple.__new__ skips FlowKey's slower __new__
            return _new_key(FlowKey, (flow[0], flow[1], flow[2], None, None))
        if self is _AD:
            return _new_key(FlowKey, (flow[0], flow[1], flow[2], flow[3], None))
        return flow


_EI, _AD = Dependency.ENDPOINT_INDEPENDENT, Dependency.ADDRESS_DEPENDENT
_new_key = tuple.__new__


class Pooling(str, Enum):
    """IP address pooling over several external addresses (RFC 4787 4.1, REQ-2)."""

    ARBITRARY = "arbitrary"
    PAIRED = "paired"
    SOFT_PAIRED = "soft-paired"


class PortAssignment(str, Enum):
    """How the external port is chosen (RFC 4787 4.2.1, REQ-3).

    ``preserve`` keeps the internal port and picks another on collision;
    ``overload`` keeps it even on collision, evicting the older mapping (the
    "port overloading" REQ-3 forbids); ``random`` and ``sequential`` ignore it.
    """

    PRESERVE = "preserve"
    OVERLOAD = "overload"
    RANDOM = "random"
    SEQUENTIAL = "sequential"


class Refresh(str, Enum):
    """Which packets refresh a mapping's timer (RFC 4787 4.3, REQ-6)."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"
    BOTH = "both"


class Hairpinning(str, Enum):
    """Hairpinning (RFC 4787 section 6, REQ-9).

    ``external-source`` presents the sender's external endpoint as source
    (REQ-9a); ``internal-source`` leaves the sender's internal endpoint.
    """

    NONE = "none"
    INTERNAL_SOURCE = "internal-source"
    EXTERNAL_SOURCE = "external-source"


class HairpinFiltering(str, Enum):
    """Whether a hairpinned packet passes the target mapping's filter (RFC 4787 REQ-8, REQ-9).

    RFC 4787 section 6 describes a hairpinning NAT as one that treats the packet as
    if it came from the external realm, so ``apply`` filters it like any inbound
    packet from the sender's external endpoint; ``bypass`` lets it in unfiltered,
    as Linux's usual hairpin set-up (DNAT plus MASQUERADE on the LAN side) does.
    """

    APPLY = "apply"
    BYPASS = "bypass"


class InboundFirst(str, Enum):
    """What an unsolicited inbound UDP packet or TCP SYN leaves behind (RFC 4787 REQ-1,
    section 4.1; RFC 5382 REQ-1).

    ``forget``: nothing; the mapping keeps serving every remote from the same
    external endpoint (REQ-1). ``remap``: like Linux conntrack, the packet from
    R to X':x leaves an unreplied entry, for ``timeouts.udp_unreplied`` seconds
    (UDP) or ``timeouts.tcp_transitory`` seconds (a SYN: conntrack's SYN_SENT);
    if the inside host then sends to R from X:x, its reply tuple clashes with that
    entry and the NAT picks a new external port for R only, so R sees an
    endpoint-dependent mapping (a REQ-1 violation) while other remotes still see x.
    """

    FORGET = "forget"
    REMAP = "remap"


class SynResponse(str, Enum):
    """What an unsolicited inbound TCP SYN eventually gets (RFC 5382 REQ-4)."""

    DROP = "drop"
    RST = "rst"
    ICMP = "icmp"


class Protocol(str, Enum):
    """Transport protocols a port forward can name."""

    UDP = "udp"
    TCP = "tcp"


@dataclass(frozen=True, slots=True)
class PortRange:
    """Inclusive range of external ports the NAT assigns from (REQ-3)."""

    __pydantic_config__ = _STRICT
    low: Port = 1024
    high: Port = 65535

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"port range low ({self.low}) is above high ({self.high})")

    def __len__(self) -> int:
        return self.high - self.low + 1


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Idle timers in seconds."""

    __pydantic_config__ = _STRICT
    udp: Seconds = 300.0
    """UDP mapping timer; REQ-5 says MUST NOT expire in under 2 min, RECOMMENDED 5 min."""
    udp_unreplied: Optional[Seconds] = None
    """Timer for a UDP session no reply has been seen on (Linux: 30 s); None: same as ``udp``."""
    tcp_established: Seconds = 7440.0
    """RFC 5382 REQ-5: established idle timeout MUST NOT be under 2 h 4 min."""
    tcp_transitory: Seconds = 240.0
    """RFC 5382 REQ-5: transitory (partly open or closing) timeout MUST NOT be under 4 min."""
    icmp: Seconds = 60.0
    """RFC 5508 REQ-2: an ICMP query session timer MUST NOT expire in under 60 s."""
    udp_stream_after: Optional[Annotated[float, Field(ge=0, description="seconds")]] = None
    """REQ-5 timers as Linux applies them: a replied UDP session gets ``udp`` only once a
    packet passes more than this many seconds after the session's first packet (Linux: 2 s,
    the conntrack "stream"); until then ``udp_unreplied``. None: ``udp`` as soon as replied."""
    tcp_rst: Optional[Seconds] = None
    """RFC 5382 REQ-5: timer of a TCP session after a RST (Linux: 10 s,
    nf_conntrack_tcp_timeout_close); None: ``tcp_transitory``."""


@dataclass(frozen=True, slots=True)
class IcmpPolicy:
    """ICMP handling (RFC 5508)."""

    __pydantic_config__ = _STRICT
    echo: bool = True
    """Translate echo request/reply, the identifier acting as the port (REQ-1, REQ-2)."""
    errors: bool = True
    """Translate ICMP errors (types 3, 4, 11, 12) and their embedded packet (REQ-3, REQ-4)."""


@dataclass(frozen=True, slots=True)
class TcpPolicy:
    """TCP handling (RFC 5382)."""

    __pydantic_config__ = _STRICT
    unsolicited_syn: SynResponse = SynResponse.ICMP
    """Answer to an unsolicited inbound SYN: REQ-4 says SHOULD be ICMP port unreachable."""
    syn_hold: Annotated[float, Field(ge=6.0)] = 6.0
    """Seconds before answering an unsolicited SYN; REQ-4 says at least 6 s (simultaneous open)."""


@dataclass(frozen=True, slots=True)
class Fragments:
    """IP fragment handling (RFC 4787 section 11, REQ-14)."""

    __pydantic_config__ = _STRICT
    translate: bool = True
    """Translate fragments: first by ports, later ones by (src, dst, proto, IP id)."""
    out_of_order: bool = True
    """Hold fragments that arrive before their first fragment (REQ-14 MUST)."""
    hold: Seconds = 2.0
    """How long held fragments and fragment translations are kept."""
    max_held: Annotated[int, Field(ge=0)] = 64
    """At most this many fragments are held at once; more are a counted drop."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits; exhaustion is a counted drop, never a crash."""

    __pydantic_config__ = _STRICT
    max_mappings: Optional[Annotated[int, Field(ge=1)]] = None
    """Mappings in total (None: no limit beyond the port space)."""
    max_mappings_per_host: Optional[Annotated[int, Field(ge=1)]] = None
    """Mappings per internal address (None: no limit)."""
    max_sessions: Optional[Annotated[int, Field(ge=1)]] = 65536
    """Sessions (remote endpoints a mapping has seen) in total, and unreplied
    ``inbound_first: remap`` entries, like Linux's nf_conntrack_max; more are a counted
    drop, so memory stays bounded under a flood (RFC 6888 REQ-4). None: no limit."""
    max_sessions_per_mapping: Optional[Annotated[int, Field(ge=1)]] = None
    """Sessions per mapping: with endpoint-independent filtering every remote that
    writes to a mapping adds one (None: no limit)."""


@dataclass(frozen=True, slots=True)
class PortForward:
    """A static inbound port forward (a "virtual server"), endpoint-independently filtered."""

    __pydantic_config__ = _STRICT
    protocol: Protocol
    external_port: Port
    internal_address: str
    internal_port: Optional[Port] = None
    """Defaults to ``external_port``."""


@dataclass(frozen=True, slots=True)
class StaticNat:
    """Static 1:1 NAT: one internal address always appears as one external address, ports kept."""

    __pydantic_config__ = _STRICT
    internal: str
    external: str


@dataclass(frozen=True, slots=True)
class Policy:
    """Every knob of a NAT. The defaults are RFC 4787's recommendations."""

    __pydantic_config__ = _STRICT
    mapping: Dependency = Dependency.ENDPOINT_INDEPENDENT
    """REQ-1: MUST be endpoint-independent."""
    filtering: Dependency = Dependency.ENDPOINT_INDEPENDENT
    """REQ-8: RECOMMENDED endpoint-independent (address-dependent if stricter is wanted)."""
    pooling: Pooling = Pooling.PAIRED
    """REQ-2: RECOMMENDED paired."""
    port_assignment: PortAssignment = PortAssignment.PRESERVE
    """REQ-3: port preservation is not required, overloading MUST NOT be used."""
    port_range: PortRange = field(default_factory=PortRange)
    port_parity: bool = True
    """REQ-4: RECOMMENDED to preserve even/odd parity (RTP/RTCP)."""
    port_block: Optional[Annotated[int, Field(ge=1, le=65535)]] = None
    """CGN-style port blocks (RFC 6888 REQ-4, RFC 7422): each internal address gets ports
    from blocks of this size on its external address; None: no blocks."""
    timeouts: Timeouts = field(default_factory=Timeouts)
    refresh: Refresh = Refresh.OUTBOUND
    """REQ-6: outbound refresh MUST be true; inbound MAY be."""
    hairpinning: Hairpinning = Hairpinning.EXTERNAL_SOURCE
    """REQ-9: MUST support hairpinning, presenting the external source (REQ-9a)."""
    hairpin_filtering: HairpinFiltering = HairpinFiltering.APPLY
    """REQ-8 applied to hairpinned packets: ``apply`` (the packet comes, as section 6
    says, as if from the external realm) or ``bypass`` (Linux DNAT+MASQUERADE hairpin)."""
    inbound_first: InboundFirst = InboundFirst.FORGET
    """REQ-1: an unsolicited inbound UDP packet or TCP SYN leaves no state (``forget``), or
    Linux's unreplied conntrack entry that remaps a later outbound flow to that remote (``remap``)."""
    icmp: IcmpPolicy = field(default_factory=IcmpPolicy)
    tcp: TcpPolicy = field(default_factory=TcpPolicy)
    fragments: Fragments = field(default_factory=Fragments)
    limits: Limits = field(default_factory=Limits)
    forwards: tuple[PortForward, ...] = ()
    static: tuple[StaticNat, ...] = ()

    def replace(self, **changes: object) -> "Policy":
        """A copy with some top-level fields changed (not validated; see presets)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# Nested sections, for code that walks the policy generically (explain, set).
SECTIONS: dict[str, type] = {
    "port_range": PortRange,
    "timeouts": Timeouts,
    "icmp": IcmpPolicy,
    "tcp": TcpPolicy,
    "fragments": Fragments,
    "limits": Limits,
}
