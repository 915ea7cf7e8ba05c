"""The sans-I/O NAT core: no sockets, no clock, no global random.

Public names: :class:`Engine`, :class:`Policy` and its enums, verdicts
(:class:`Forward`, :class:`Hairpin`, :class:`Drop`), :class:`Event`, :class:`Side`,
the keys :class:`FlowKey` (``Dependency.key`` trims one) and :class:`Addresses`.

Modules
-------
``nat``            the :class:`Engine` facade: parse, dispatch, the established-flow fast path
``state``          :class:`~natlab.engine.state.NatState`, the one owner of mappings, sessions,
                   timers and side tables, and their transitions
``table``          the Mapping and Session records, TCP states (RFC 5382)
``policy``         the frozen :class:`Policy` and its RFC 4787 enums
``types``          Side, Proto, Endpoint, Flow, FlowKey, Addresses
``verdicts``       Forward, Hairpin, Drop, Emit, Tick, Event
``counters``       Counters (``counters.drop`` makes every counted Drop)
``ports``          the port allocator (REQ-2..4, CGN blocks)
``checksum_deltas`` per-mapping RFC 1624 deltas and in-place rewrites
``hairpin``, ``icmp_errors``, ``fragments``, ``static_nat``, ``syn_hold``, ``inbound_first``:
                   one behaviour each; each takes a narrow context, never the engine
``live``           reconfigure, set_pool, flush as NatState transitions
``views``          read-only snapshots of the mapping table

Nothing here imports ``nat`` but this file; imports form no cycle, and no module
touches another's private attributes (tests/unit/test_engine_structure.py).
"""

from natlab.engine.fastpath import FastEntry
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
from natlab.engine.types import Addresses, Endpoint, Flow, FlowKey, Proto, Side
from natlab.engine.verdicts import Drop, DropReason, Emit, Event, EventKind, Forward, Hairpin, Tick, Verdict
from natlab.engine.views import MappingView, SessionView

__all__ = [
    "Addresses", "Dependency", "Drop", "FastEntry", "DropReason", "Emit", "Endpoint", "Engine", "Event", "EventKind",
    "Flow", "FlowKey", "Forward", "Fragments", "Hairpin", "HairpinFiltering", "Hairpinning", "InboundFirst", "IcmpPolicy", "Limits",
    "MappingView", "Policy", "Pooling", "PortAssignment", "PortForward", "PortRange",
    "Proto", "Protocol", "Refresh", "SessionView", "Side", "StaticNat", "SynResponse",
    "TcpPolicy", "Tick", "Timeouts", "Verdict",
]
