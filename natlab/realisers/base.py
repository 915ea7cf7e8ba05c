"""The realiser seam: what makes a lab, and what a scenario (or a test) asks of it.

Theory of operation
-------------------
A :class:`Realiser` makes nodes and links and runs programs in them: network
namespaces (:mod:`natlab.realisers.netns`), containers
(:mod:`natlab.realisers.docker`) or the in-memory network
(:mod:`natlab.realisers.memory`). Each is one object in
:mod:`natlab.realisers.registry`, chosen there by name; nobody else compares
backend names. Callers ask a realiser's traits (``runs_programs``,
``makes_labs``, ...) instead.

A :class:`Driver` is the one face every realiser's lab shows to the scenario runner
and to the pytest plugin: the netns lab (:mod:`natlab.realisers.netns.driver`),
its in-memory twin (:mod:`natlab.realisers.memory.driver`) and Docker labs. It
speaks in host and gateway *names* and in values: a :class:`Probe` in, a
:class:`ProbeResult` out; mapping rows as plain dicts, shaped exactly as the
gateway control socket's ``mappings`` op returns them (``MappingView.to_dict()``
plus ``expires_in``), so an expectation reads the same on every backend.

A backend that cannot do something (the memory backend cannot ``run`` a
program) raises :class:`Unsupported`; the runner turns that into a clear skip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Protocol, Sequence

from natlab.errors import NatlabError

if TYPE_CHECKING:
    from natlab.topology.model import Topology

__all__ = ["Driver", "Probe", "ProbeResult", "Realiser", "RunResult", "Unavailable", "Unsupported",
           "PROTOCOLS", "PORTLESS", "json_lines"]

PROTOCOLS = ("udp", "tcp", "icmp", "gre")
PORTLESS = ("icmp", "gre")
"""Probes sent to an address, not a port."""


class Unsupported(NatlabError):
    """This backend cannot do what was asked (e.g. run a program in memory)."""


@dataclass(frozen=True)
class Probe:
    """One packet exchange: ``src`` sends to ``dst``:``dport``; ``receiver`` listens.

    UDP: one datagram. TCP: a connect (delivered = the receiver accepted it).
    ICMP: one echo request (``dport`` and ``listen_port`` are 0; ``sport`` is
    the echo identifier, 0 = any). GRE: one GRE packet (IP protocol 47, no
    ports), a protocol a NAPT has no port to translate. With ``reply`` the
    receiver answers the source it saw (UDP datagram back / TCP data back / ICMP
    echo reply / GRE packet back), and the result says whether that answer
    reached ``src``; a UDP or GRE sender waiting so also learns of an ICMP
    destination unreachable about its packet ("refused").
    """

    proto: str
    src: str
    """Sending host's name."""
    dst: str
    """Destination IPv4 address (already resolved from names by the runner)."""
    dport: int = 0
    sport: int = 0
    """Source port to bind; 0 lets the host pick."""
    receiver: Optional[str] = None
    """Host expected to get it; None = nobody listens (e.g. a packet to a closed port)."""
    listen_port: int = 0
    """Port the receiver listens on (its own, inside its NAT); 0 = ``dport``."""
    reply: bool = False
    timeout: float = 1.0
    """How long to wait for delivery (and again for the reply); memory ignores it."""
    payload: str = "natlab-probe"
    keep_open: bool = False
    """TCP: neither end closes; the connection stays open until the driver is closed."""

    @property
    def port_at_receiver(self) -> int:
        return self.listen_port or self.dport


@dataclass(frozen=True)
class ProbeResult:
    """What happened to a :class:`Probe`."""

    probe: Probe
    delivered: bool
    """The receiver got it (TCP: accepted the connection)."""
    seen: Optional[str] = None
    """Source the receiver saw, ``"ip:port"`` (ICMP: ``"ip"``); None if not delivered."""
    sport: int = 0
    """Source port the sender actually used (ICMP: echo identifier)."""
    replied: Optional[bool] = None
    """With ``probe.reply``: whether the answer came back to the sender."""
    reply_from: Optional[str] = None
    """Source of the answer as the sender saw it, ``"ip:port"``."""
    detail: str = ""
    """Why not, where known: a drop reason (memory), "timeout", "refused", an ICMP error."""
    events: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    @property
    def seen_address(self) -> Optional[str]:
        return None if self.seen is None else self.seen.rsplit(":", 1)[0]

    @property
    def seen_port(self) -> Optional[int]:
        if self.seen is None or ":" not in self.seen:
            return None
        return int(self.seen.rsplit(":", 1)[1])


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects a host program printed, one per line (anything else is skipped)."""
    out = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


@dataclass(frozen=True)
class RunResult:
    """A finished command: exit status and output (text)."""

    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Unavailable:
    """Why a realiser cannot run on this machine."""

    backend: str
    reason: str
    """What is missing, with how to get it: "needs root (...)", "NetfilterQueue is not installed (pip ...)"."""
    needs_root: bool = False
    """The only problem found so far is privileges: root would do, or the memory backend."""


class Realiser(Protocol):
    """How a topology's nodes and links are made, and programs run in them.

    Traits say what callers may expect, so nobody compares names:
    """

    name: str
    """Its name in the registry (``--backend NAME``, ``backend:`` in files)."""
    summary: str
    needs_root: bool
    """Makes kernel objects: its tests carry the ``netns`` marker and skip without root."""
    runs_programs: bool
    """Hosts run real programs (``run``/``spawn`` steps, ``host().run``)."""
    makes_labs: bool
    """Labs with a state file and gateway control sockets (``natlab up``/``status``/``set``)."""
    realtime: bool
    """Time is the wall clock (False: a manual clock that ``sleep`` moves at once)."""
    scenario_default: bool
    """Scenario files run here when no backend is chosen."""
    runs_matrix: bool
    """``natlab matrix --backend NAME`` can run here."""

    def unavailable(self) -> Optional[Unavailable]:
        """Why it cannot run on this machine, or None if it can (no side effects)."""

    def open(self, topology: "Topology", seed: Optional[int] = None) -> "Driver":
        """Realise ``topology`` as a fresh lab; the driver takes it down on ``close()``."""


class Driver(Protocol):
    """A lab that is up, driven by node names. Every method may raise :class:`Unsupported`."""

    backend: str
    """The name of the realiser that made it (see :mod:`natlab.realisers.registry`)."""

    def hosts(self) -> list[str]: ...
    def gateways(self) -> list[str]: ...
    def addresses(self, node: str) -> list[str]:
        """A host's addresses; a gateway's current pool (external addresses)."""
    def probe(self, probe: Probe) -> ProbeResult: ...
    def run(self, host: str, command: Sequence[str], timeout: float) -> RunResult: ...
    def spawn(self, host: str, command: Sequence[str], name: str) -> None:
        """Start a command in the background; it is stopped by :meth:`stop_spawned`."""
    def stop_spawned(self) -> dict[str, RunResult]:
        """Stop everything :meth:`spawn` started; their output by name."""
    def spawned_output(self, name: str) -> RunResult:
        """Output so far of a spawned command (returncode -1 while it runs)."""
    def mappings(self, gateway: str) -> list[dict[str, Any]]: ...
    def events(self, gateway: str, limit: int = 20) -> list[dict[str, Any]]:
        """The gateway's most recent events (dicts with at least ``kind`` and ``seq``)."""
    def counters(self, gateway: str) -> dict[str, Any]: ...
    def set(self, gateway: str, assignments: Sequence[str]) -> None:
        """Change knobs live: ``["timeouts.udp=30", "filtering=address-dependent"]``."""
    def configure(self, gateway: str, behaviour: str, overrides: Optional[dict[str, Any]] = None) -> None:
        """Replace the whole policy with a preset (plus overrides) and flush."""
    def advance(self, gateway: str, seconds: float) -> None:
        """Move one gateway's clock forward (time travel) and let it expire what is due."""
    def reboot(self, gateway: str) -> None:
        """Forget every dynamic mapping, as a power cycle would."""
    def set_pool(self, gateway: str, pool: Sequence[str]) -> None:
        """Change a gateway's external addresses."""
    def map_port(self, host: str, request: Any) -> Any:
        """Ask ``host``'s gateway for a port mapping with natlab's own client: a
        :class:`natlab.portmap.client.PortMapRequest` in, a ``PortMapAnswer`` out
        (NAT-PMP, PCP or UPnP IGD; real sockets on netns, the in-memory network in memory)."""
    def sleep(self, seconds: float) -> None:
        """Let time pass for everyone: wall time on real labs, the manual clock in memory."""
    def close(self) -> None:
        """Take the lab down (idempotent)."""
