"""natlab: a testbed that emulates any NAT.

The curated public API (pinned by tests/unit/test_public_api.py); see README.md
for the tour and docs/architecture.md for how the pieces fit:

- the engine, sans-I/O: :class:`Engine`, :class:`Policy` and its enums, the
  verdicts (:class:`Forward`, :class:`Hairpin`, :class:`Drop`), :class:`Event`,
  :class:`Side`, :class:`MappingView`;
- behaviours: :func:`resolve`, :func:`load_preset` (a preset name or file -> a Policy);
- topologies: :func:`load_topology`, :class:`Topology`;
- labs: :func:`up`, :func:`attach`, :func:`down` (:mod:`natlab.lab`);
- the two seams: :class:`Realiser` and :class:`Driver` (:mod:`natlab.realisers`),
  :class:`Datapath` (:mod:`natlab.datapaths`), and the one :class:`Gateway` service
  every datapath feeds; :class:`MemNet`, the in-memory network;
- scenarios: :func:`load_scenario`, :func:`run_scenario`;
- the error tree (:mod:`natlab.errors`).

Everything but the engine and the errors is imported on first use, so
``import natlab`` stays cheap (a gateway process starts with it).
"""

from typing import Any

from natlab.engine import (
    Dependency,
    Drop,
    DropReason,
    Emit,
    Endpoint,
    Engine,
    Event,
    EventKind,
    Flow,
    Forward,
    Fragments,
    Hairpin,
    HairpinFiltering,
    Hairpinning,
    IcmpPolicy,
    InboundFirst,
    Limits,
    MappingView,
    Policy,
    Pooling,
    PortAssignment,
    PortForward,
    PortRange,
    Proto,
    Protocol,
    Refresh,
    SessionView,
    Side,
    StaticNat,
    SynResponse,
    TcpPolicy,
    Tick,
    Timeouts,
    Verdict,
)
from natlab.errors import (
    BackendUnavailable,
    ConfigError,
    ControlError,
    LabError,
    LabNotFound,
    NatlabError,
    NotPrivileged,
    TopologyError,
    UnknownBackend,
)

__version__ = "0.1.0"

_LAZY = {
    "resolve": ("natlab.behaviours.presets", "resolve"),
    "load_preset": ("natlab.behaviours.presets", "load_preset"),
    "load_topology": ("natlab.topology.load", "load"),
    "Topology": ("natlab.topology.model", "Topology"),
    "up": ("natlab.lab", "up"),
    "attach": ("natlab.lab", "attach"),
    "down": ("natlab.lab", "down"),
    "Lab": ("natlab.lab", "Lab"),
    "Realiser": ("natlab.realisers.base", "Realiser"),
    "Driver": ("natlab.realisers.base", "Driver"),
    "Probe": ("natlab.realisers.base", "Probe"),
    "ProbeResult": ("natlab.realisers.base", "ProbeResult"),
    "Datapath": ("natlab.datapaths.base", "Datapath"),
    "Gateway": ("natlab.gateway.service", "Gateway"),
    "GatewaySpec": ("natlab.gateway.spec", "GatewaySpec"),
    "MemNet": ("natlab.realisers.memory.network", "MemNet"),
    "load_scenario": ("natlab.scenario.load", "load"),
    "run_scenario": ("natlab.scenario.runner", "run"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'natlab' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


__all__ = [
    # the engine
    "Dependency", "Drop", "DropReason", "Emit", "Endpoint", "Engine", "Event", "EventKind", "Flow",
    "Forward", "Fragments", "Hairpin", "HairpinFiltering", "Hairpinning", "IcmpPolicy", "InboundFirst",
    "Limits", "MappingView", "Policy", "Pooling", "PortAssignment", "PortForward", "PortRange", "Proto",
    "Protocol", "Refresh", "SessionView", "Side", "StaticNat", "SynResponse", "TcpPolicy", "Tick",
    "Timeouts", "Verdict",
    # behaviours, topologies, labs
    "resolve", "load_preset", "load_topology", "Topology", "up", "attach", "down", "Lab",
    # the seams and the one gateway service
    "Realiser", "Driver", "Probe", "ProbeResult", "Datapath", "Gateway", "GatewaySpec", "MemNet",
    # scenarios
    "load_scenario", "run_scenario",
    # errors
    "BackendUnavailable", "ConfigError", "ControlError", "LabError", "LabNotFound", "NatlabError",
    "NotPrivileged", "TopologyError", "UnknownBackend",
    "__version__",
]
