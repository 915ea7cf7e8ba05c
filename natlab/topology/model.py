"""Topology files as data: strict pydantic models in, one frozen spec out.

Theory of operation
-------------------
A topology file is parsed by the ``*Entry`` models below, which mirror the YAML
exactly and reject unknown keys. :func:`natlab.topology.addressing.build` then
checks the cross references, picks the addresses the user left out and returns a
:class:`Topology`: frozen dataclasses in which every address, route and seed is
decided. Realising a lab (:mod:`natlab.lab`) only reads that value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from natlab.engine.policy import Policy
from natlab.realisers.registry import names as _realiser_names

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
"""Lab, network and node names: they end up in namespace names."""

Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkEntry(_Strict):
    """``networks: NAME: {...}``: one layer-2 segment (a bridge)."""

    subnet: IPv4Network = Field(description="IPv4 subnet, e.g. 203.0.113.0/24")


_LabDatapath = Literal["nfqueue", "kernel-cache", "dpdk"]
"""The datapaths a lab gateway may name (``natlab.datapaths.registry.LAB_DATAPATHS``)."""


class KernelCacheEntry(_Strict):
    """``kernel_cache: {...}``: options of the kernel session cache datapath."""

    quantum: float = Field(1.0, gt=0, le=60, description=(
        "seconds a cached session entry lives at most before the engine sees the flow again "
        "(timers, refresh and filtering are exact to this quantum)"))


class DpdkEntry(_Strict):
    """``dpdk: {...}``: options of the DPDK datapath (see docs/dpdk.md)."""

    workers: int = Field(1, ge=1, le=8, description="worker lcores polling the ports")
    driver: Literal["auto", "af_xdp", "af_packet"] = Field(
        "auto", description="PMD over the gateway's veths in a lab (auto: af_xdp, else af_packet)")
    ports: list[str] = Field(default_factory=list, description=(
        "hardware runs: the PCI devices (inside first, outside second) instead of the lab's veths"))
    eal_args: list[str] = Field(default_factory=list, description="extra DPDK EAL arguments, passed as given")
    quantum: float = Field(1.0, gt=0, le=60, description="seconds a fast-path session lives at most "
                           "before the engine sees the flow again")
    sessions: int = Field(65536, ge=1024, le=1 << 24, description="fast-path session table size per worker")
    idle: Literal["adaptive", "busy"] = Field(
        "adaptive", description="an idle poll loop backs off into short sleeps, any packet brings "
        "it back to full speed (adaptive), or spins a core per poller (busy: hardware runs)")


class GatewayEntry(_Strict):
    """``gateways: NAME: {...}``: a NAT between an inside and an outside network."""

    behaviour: str = Field(description="preset name, or a path to a preset file")
    inside: Name = Field(description="network behind the NAT")
    outside: Name = Field(description="network the NAT's pool addresses live on")
    address: Optional[IPv4Address] = Field(
        None, description="inside address (default: first usable of the inside subnet)")
    pool: Optional[list[IPv4Address]] = Field(
        None, min_length=1, description="external addresses (default: one picked)")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="policy knobs overriding the preset")
    datapath: Optional[_LabDatapath] = Field(
        None, description="how packets reach the engine: nfqueue (every packet), kernel-cache "
        "(established flows rewritten in the kernel) or dpdk (default nfqueue; "
        "natlab up --datapath overrides)")
    kernel_cache: KernelCacheEntry = Field(default_factory=KernelCacheEntry)
    dpdk: DpdkEntry = Field(default_factory=DpdkEntry)


class HostEntry(_Strict):
    """``hosts: NAME: {...}``: an end host on one network."""

    network: Name
    address: Optional[IPv4Address] = None
    addresses: Optional[list[IPv4Address]] = Field(None, min_length=1)
    command: Optional[str] = Field(
        None, description="shell command started in the host when the lab comes up "
        "(with image: replaces the image's CMD, split like a shell would, no shell run)")
    image: Optional[str] = Field(
        None, description="docker backend: the host runs this container image (default: natlab's)")
    env: dict[str, str] = Field(
        default_factory=dict, description="docker backend: environment of the host's container")
    volumes: list[str] = Field(
        default_factory=list, description="docker backend: bind mounts SRC:DST[:ro] "
        "(a relative SRC is relative to the topology file)")

    @model_validator(mode="after")
    def _one_address_key(self) -> "HostEntry":
        if self.address is not None and self.addresses is not None:
            raise ValueError("give either 'address' or 'addresses', not both")
        return self


class RouterEntry(_Strict):
    """``routers: NAME: {...}``: plain forwarding (no NAT) between networks."""

    networks: list[Name] = Field(min_length=2)
    addresses: dict[Name, IPv4Address] = Field(
        default_factory=dict, description="address per network (default: picked)")


_LabBackend = Literal[_realiser_names(makes_labs=True)]  # type: ignore[valid-type]
"""The realisers a topology may name (those that make labs), from the one registry."""


class TopologyFile(_Strict):
    """The whole file."""

    name: Name
    seed: int = 0
    backend: Optional[_LabBackend] = Field(
        None, description="how the lab is realised (default netns; natlab up --backend overrides)")
    networks: dict[Name, NetworkEntry] = Field(min_length=1)
    gateways: dict[Name, GatewayEntry] = Field(default_factory=dict)
    hosts: dict[Name, HostEntry] = Field(default_factory=dict)
    routers: dict[Name, RouterEntry] = Field(default_factory=dict)


# --- the frozen spec ------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    """``dst`` reached via ``via`` (``dst`` is ``0.0.0.0/0`` for the default)."""

    dst: IPv4Network
    via: IPv4Address


@dataclass(frozen=True)
class Leg:
    """One interface of a node: its name in the node's namespace, network, addresses."""

    iface: str
    network: str
    addresses: tuple[IPv4Interface, ...]


@dataclass(frozen=True)
class Network:
    name: str
    subnet: IPv4Network
    gateway: Optional[str] = None
    """The gateway whose inside this network is; None for a WAN network."""


@dataclass(frozen=True)
class Node:
    """Anything that gets a namespace: host, gateway or router."""

    name: str
    kind: str
    """``host``, ``gateway`` or ``router``."""
    legs: tuple[Leg, ...]
    routes: tuple[Route, ...]

    @property
    def addresses(self) -> tuple[IPv4Address, ...]:
        return tuple(a.ip for leg in self.legs for a in leg.addresses)

    def leg_on(self, network: str) -> Leg:
        return next(leg for leg in self.legs if leg.network == network)


@dataclass(frozen=True)
class Host(Node):
    command: Optional[str] = None
    image: Optional[str] = None
    """Docker backend: the image the host's container runs (None: natlab's image)."""
    env: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    volumes: tuple[str, ...] = ()
    """Docker bind mounts ``SRC:DST[:MODE]``, SRC absolute."""


@dataclass(frozen=True)
class Gateway(Node):
    behaviour: str = ""
    """The preset as the file names it (a name, or an absolute path)."""
    inside: str = ""
    outside: str = ""
    address: IPv4Address = IPv4Address(0)
    pool: tuple[IPv4Address, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """The file's overrides, nested (kept for display; ``policy`` already has them)."""
    seed: int = 0
    policy: Optional[Policy] = field(default=None, compare=False, hash=False)
    """The behaviour resolved once, at load: the preset with the overrides applied.
    Realisers and datapaths use this value; nobody resolves the preset again."""
    preset: str = ""
    """The preset's own name (for ``status`` and the gateway spec)."""
    datapath: Optional[str] = None
    """The file's ``datapath:`` (None: the default, or what ``--datapath`` forces)."""
    datapath_options: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)
    """Options per datapath, defaults filled in: ``{"kernel_cache": {...}, "dpdk": {...}}``."""

    def resolved_policy(self) -> Policy:
        """:attr:`policy`, which every loaded topology has (a hand-built one must set it)."""
        if self.policy is None:
            from natlab.errors import ConfigError

            raise ConfigError(f"gateway {self.name!r} has no resolved policy", got=self.behaviour,
                              hint="load the topology with natlab.topology.load / from_data")
        return self.policy


@dataclass(frozen=True)
class Router(Node):
    pass


@dataclass(frozen=True)
class Topology:
    """A fully decided topology: what ``natlab up`` realises."""

    name: str
    seed: int
    networks: tuple[Network, ...]
    hosts: tuple[Host, ...]
    gateways: tuple[Gateway, ...]
    routers: tuple[Router, ...]
    file: Optional[str] = None
    backend: Optional[str] = None
    """``netns`` or ``docker`` if the file names one; None: the caller's choice."""

    @property
    def nodes(self) -> tuple[Node, ...]:
        return (*self.gateways, *self.routers, *self.hosts)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)

