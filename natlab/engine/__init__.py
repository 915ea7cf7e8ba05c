"""The sans-I/O NAT core: no sockets, no clock, no global random.

Public names: :class:`Engine`, :class:`Policy` and its enums, verdicts
(:class:`Forward`, :class:`Hairpin`, :class:`Drop`), :class:`Event`, :class:`Side`.
"""

from natlab.engine.nat import Engine
from natlab.engine.policy import (
    Dependency,
    Fragments,
    HairpinFiltering,
    Hairpinning,
    InboundFirst,
    IcmpPolicy,
    Limits,
    Policy,
    Pooling,
    PortAssignment,
    PortForward,
    PortRange,
    Protocol,
    Refresh,
    StaticNat,
    SynResponse,
    TcpPolicy,
    Timeouts,
)
from natlab.engine.types import Endpoint, Flow, Proto, Side
from natlab.engine.verdicts import Drop, DropReason, Emit, Event, EventKind, Forward, Hairpin, Tick, Verdict
from natlab.engine.views import MappingView, SessionView

__all__ = [
    "Dependency", "Drop", "DropReason", "Emit", "Endpoint", "Engine", "Event", "EventKind",
    "Flow", "Forward", "Fragments", "Hairpin", "HairpinFiltering", "Hairpinning", "InboundFirst", "IcmpPolicy", "Limits",
    "MappingView", "Policy", "Pooling", "PortAssignment", "PortForward", "PortRange",
    "Proto", "Protocol", "Refresh", "SessionView", "Side", "StaticNat", "SynResponse",
    "TcpPolicy", "Tick", "Timeouts", "Verdict",
]
