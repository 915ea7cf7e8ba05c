"""Scenario files as data: one strict model per step action, one frozen value out.

Theory of operation
-------------------
A scenario names a topology (a path or inline), a ``seed``, per-gateway
behaviour changes and a list of steps. Each step is a mapping with exactly one
*action* key (``udp``, ``run``, ``advance`` ...) plus the common keys ``name``,
``expect`` and ``save``. :mod:`natlab.scenario.load` picks the action's model
from :data:`ACTIONS` and its expectation model from :data:`EXPECTS`; both reject
unknown keys, so a typo fails before anything is created.

Endpoints in steps are written ``NAME:PORT`` or ``ADDRESS:PORT`` (``*`` for
any port), where NAME is a host (its first address) or a gateway (its first
external address), or ``${var}``, a value an earlier step saved with ``save``.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from natlab.realisers.registry import names as _realiser_names
from natlab.topology.model import Name, Topology

__all__ = ["ACTIONS", "COMMON_KEYS", "EXPECTS", "Scenario", "Step", "PROBE_ACTIONS"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Port = Field(ge=0, le=65535)
PortCheck = Union[int, Literal["preserved", "changed"]]
Command = Union[str, list[str]]


# --- actions -------------------------------------------------------------------

class ProbeSpec(_Strict):
    """``udp:`` / ``tcp:`` / ``icmp:`` / ``gre:`` send one probe from a host."""

    src: Name = Field(alias="from", description="sending host")
    to: str = Field(description="NAME:PORT, ADDRESS:PORT or ${var} (ICMP, GRE: NAME or ADDRESS)")
    sport: int = Field(0, ge=0, le=65535, description="source port (ICMP: echo id); 0 = any")
    at: Optional[str] = Field(
        None, description="receiving host[:port] (default: the host owning 'to'); 'nobody' = no listener")
    reply: bool = Field(False, description="the receiver answers the source it saw")
    timeout: Optional[float] = Field(None, gt=0, description="seconds to wait (default 1)")
    keep_open: bool = Field(False, description="TCP: neither end closes; open until the scenario ends")


class RunSpec(_Strict):
    """``run:`` a command on a host and wait for it."""

    host: Name
    command: Command = Field(description="a shell command line, or an argv list")
    timeout: float = Field(30.0, gt=0)


class SpawnSpec(_Strict):
    """``spawn:`` start a command in the background; stopped when the scenario ends."""

    host: Name
    command: Command
    name: Optional[str] = Field(None, description="name for wait/report (default: spawn-N)")
    ready: Optional[str] = Field(None, description="regex its output must show before going on")
    timeout: float = Field(10.0, gt=0, description="seconds to wait for 'ready'")


class MappingsSpec(_Strict):
    """``mappings:`` look at a gateway's mapping table (filters are all optional)."""

    gateway: Name
    protocol: Optional[Literal["udp", "tcp", "icmp"]] = None
    internal: Optional[str] = Field(None, description="NAME:PORT / ADDRESS:PORT / ${var}")
    external: Optional[str] = None
    kind: Optional[Literal["dynamic", "forward", "static", "natpmp", "pcp", "upnp"]] = None


class MapPortSpec(_Strict):
    """``map_port:`` a host asks a gateway for a port mapping with natlab's own client."""

    host: Name
    protocol: Literal["natpmp", "pcp", "upnp"]
    port: int = Field(ge=1, le=65535, description="the internal port to map")
    transport: Literal["udp", "tcp"] = "udp"
    external_port: int = Field(0, ge=0, le=65535, description="the port asked for (0: any)")
    lifetime: int = Field(7200, ge=0, le=2**32 - 1, description="seconds (UPnP IGD:1: 0 is permanent)")
    delete: bool = Field(False, description="remove the mapping (NAT-PMP/PCP lifetime 0, UPnP DeletePortMapping)")
    third_party: Optional[Name] = Field(None, description="map for this other inside host (THIRD_PARTY, NewInternalClient)")
    nonce: Optional[str] = Field(None, description="PCP: the mapping's nonce to refresh or delete it (${var}_nonce)")
    prefer_failure: bool = Field(False, description="PCP PREFER_FAILURE: that port or nothing")
    any_port: bool = Field(False, description="UPnP IGD:2 AddAnyPortMapping")
    peer: Optional[str] = Field(None, description="PCP PEER (RFC 6887 section 12) for this remote NAME:PORT or ADDR:PORT")
    gateway: Optional[Name] = Field(None, description="whose server to ask (default: the host's own gateway)")
    timeout: float = Field(3.0, gt=0, description="seconds to wait for each answer")


class AdvanceSpec(_Strict):
    """``advance:`` time travel: move a gateway's clock (all gateways if none named)."""

    gateway: Optional[Name] = None
    seconds: float = Field(ge=0)


class SetSpec(_Strict):
    """``set:`` change knobs on a running gateway, e.g. ``{timeouts.udp: 30}``."""

    gateway: Name
    knobs: dict[str, Any] = Field(min_length=1)


class ConfigureSpec(_Strict):
    """``configure:`` replace a gateway's whole behaviour with a preset (mappings flushed)."""

    gateway: Name
    behaviour: str
    overrides: dict[str, Any] = Field(default_factory=dict)


class RebootSpec(_Strict):
    """``reboot:`` a gateway forgets every dynamic mapping."""

    gateway: Name


class PoolSpec(_Strict):
    """``set_pool:`` change a gateway's external address(es)."""

    gateway: Name
    addresses: list[IPv4Address] = Field(min_length=1)


class PunchSpec(_Strict):
    """``punch:`` UDP hole punching between two hosts with natlab's built-in peer.

    Where hosts run programs the peer itself runs on both (and its rendezvous on
    ``rendezvous``); in memory its own state machines run on the twin (RFC 8445
    checks through the NATs, RFC 8489-style bindings from the rendezvous).
    """

    peers: list[Name] = Field(min_length=2, max_length=2, description="the two hosts that punch")
    rendezvous: Name = Field(description="the host the rendezvous runs on (reachable by both)")
    port: int = Field(3478, ge=1, le=65535, description="the rendezvous' UDP port")
    sport: int = Field(40000, ge=1, le=65535, description="each peer's punching port")
    timeout: float = Field(3.0, gt=0, le=60, description="seconds each peer has")
    interval: float = Field(0.05, gt=0, le=5, description="seconds between rounds of checks")


class WaitSpec(_Strict):
    """``wait:`` let time pass, or poll a condition until it holds or ``timeout`` passes."""

    seconds: Optional[float] = Field(None, ge=0)
    mappings: Optional[MappingsSpec] = None
    spawned: Optional[str] = Field(None, description="name of a spawned command")
    output: Optional[str] = Field(None, description="regex the spawned command's output must show")
    timeout: float = Field(5.0, gt=0)


# --- expectations ------------------------------------------------------------------

class ProbeExpect(_Strict):
    delivered: Optional[bool] = Field(None, description="default true (false with at: nobody)")
    source: Optional[str] = Field(None, description="NAME:PORT / ADDRESS:PORT / NAME:* / ${var}")
    source_port: Optional[PortCheck] = Field(None, description="a number, preserved or changed")
    same_source_as: Optional[str] = Field(None, description="${var} saved by an earlier probe")
    different_source_from: Optional[str] = None
    replied: Optional[bool] = None
    reply_from: Optional[str] = Field(None, description="the source the sender saw on the answer")
    refused: Optional[bool] = Field(None, description="the sender got destination unreachable / RST")


class RunExpect(_Strict):
    exit: Optional[int] = 0
    stdout: Optional[str] = Field(None, description="regex searched in stdout")
    stderr: Optional[str] = None
    output: Optional[str] = Field(None, description="regex searched in stdout + stderr")
    no_output: Optional[str] = Field(None, description="regex that must NOT appear")


class MappingsExpect(_Strict):
    count: Optional[int] = Field(None, ge=0)
    exists: Optional[bool] = None
    external_port: Optional[PortCheck] = None
    external: Optional[str] = None
    parity: Optional[Literal["preserved"]] = None


class MapPortExpect(_Strict):
    ok: Optional[bool] = Field(None, description="granted (default true, false if result is not SUCCESS)")
    result: Optional[str] = Field(None, description="SUCCESS, a NAT-PMP/PCP result name (NOT_AUTHORIZED) or UPNP_<code>")
    external_port: Optional[PortCheck] = Field(None, description="a number, preserved or changed")
    external: Optional[str] = Field(None, description="NAME:PORT / ADDRESS:PORT / NAME:* / ${var}")
    lifetime: Optional[int] = Field(None, ge=0, description="the lifetime granted, in seconds")
    epoch_at_most: Optional[int] = Field(None, ge=0, description="the server's epoch (NAT-PMP/PCP) is at most this")
    epoch_at_least: Optional[int] = Field(None, ge=0)


class PunchExpect(_Strict):
    punched: Optional[bool] = Field(None, description="both peers got through (default true)")


class NoExpect(_Strict):
    pass


ACTIONS: dict[str, type[BaseModel]] = {
    "udp": ProbeSpec, "tcp": ProbeSpec, "icmp": ProbeSpec, "gre": ProbeSpec,
    "run": RunSpec, "spawn": SpawnSpec, "mappings": MappingsSpec,
    "advance": AdvanceSpec, "set": SetSpec, "configure": ConfigureSpec,
    "reboot": RebootSpec, "set_pool": PoolSpec, "wait": WaitSpec, "map_port": MapPortSpec, "punch": PunchSpec,
}
"""Every step action and the model of its value."""

EXPECTS: dict[str, type[BaseModel]] = {
    "udp": ProbeExpect, "tcp": ProbeExpect, "icmp": ProbeExpect, "gre": ProbeExpect,
    "run": RunExpect, "mappings": MappingsExpect, "wait": MappingsExpect, "map_port": MapPortExpect,
    "punch": PunchExpect,
}
"""Actions that take ``expect:``, and its model; the others take none."""

PROBE_ACTIONS = ("udp", "tcp", "icmp", "gre")
PROCESS_ACTIONS = ("run", "spawn")
"""Actions needing real processes: the memory backend skips scenarios using them."""
COMMON_KEYS = ("name", "expect", "save")
BACKENDS = _realiser_names()
"""Every realiser a scenario may name (from the one registry)."""
_Backend = Literal[BACKENDS]  # type: ignore[valid-type]


class GatewayChange(_Strict):
    """``gateways: NAME: {...}`` in a scenario: change the topology's gateway before it starts."""

    behaviour: Optional[str] = None
    overrides: dict[str, Any] = Field(default_factory=dict)


class ScenarioFile(_Strict):
    """The top level of a scenario file."""

    name: Optional[Name] = Field(None, description="default: the file name")
    description: str = ""
    topology: Union[str, dict[str, Any]] = Field(description="path (relative to this file) or inline")
    seed: Optional[int] = Field(None, description="fixes every port every NAT picks")
    backends: Optional[list[_Backend]] = Field(
        None, min_length=1, description="where it may run (default: everywhere it can)")
    gateways: dict[Name, GatewayChange] = Field(default_factory=dict)
    steps: list[Any] = Field(min_length=1, description="each a mapping with one action")


# --- the frozen value -----------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One validated step; ``line`` is where it starts in its file."""

    index: int
    line: Optional[int]
    action: str
    spec: Any
    expect: Any = None
    name: Optional[str] = None
    save: Optional[str] = None

    @property
    def label(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"step {self.index + 1} {self.name or self.action}{where}"


@dataclass(frozen=True)
class Scenario:
    """A scenario ready to run: its topology decided, its steps checked."""

    name: str
    file: Optional[str]
    description: str
    topology: Topology
    seed: int
    backends: tuple[str, ...]
    steps: tuple[Step, ...]

    def needs_processes(self) -> Optional[Step]:
        """The first step that needs real processes, if any."""
        return next((s for s in self.steps if s.action in PROCESS_ACTIONS
                     or (s.action == "wait" and s.spec.spawned)), None)
