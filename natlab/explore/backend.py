"""The one module of :mod:`natlab.explore` that imports natlab's internals.

Theory of operation
-------------------
The workbench drives a lab through the scenario :class:`Driver` API only
(probes, mappings, events, counters, set, configure, advance, reboot) and
validates what it saves with the scenario loader. Everything it needs from the
rest of natlab is re-exported or wrapped here, so when a module moves, this file
is the one to fix.

A lab comes from one of two places: :func:`open_driver` brings a topology up on
a realiser (the registry's ``open``; the driver takes it down on ``close()``),
:func:`attach` finds a lab that is already up by its state file (as ``natlab
status``/``mappings``/``events`` do) and drives it with the realiser's own driver,
``owns=False``: closing it leaves the lab up. :func:`live_gateway` asks such a
lab's gateways (their control sockets' ``status``) what they run now.

The only place that looks *inside* a backend is :class:`Tracer`: on the memory
backend it watches the twin's engines and host stacks to tell the packet's walk
(each NAT's verdict, the packet before and after it). It wraps instance
attributes, never changes behaviour, and is simply absent on other backends:
the walk is then told from the gateways' records (:mod:`natlab.explore.eventwalk`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from natlab.cli.output import nat_class, show_value
from natlab.cli.presets_cmd import requirement_of
from natlab.errors import ConfigError, NatlabError, combined, report
from natlab.behaviours.overrides import flatten, parse_assignments
from natlab.behaviours.presets import apply_overrides, policy_schema, policy_to_dict, preset_names, resolve
from natlab.realisers.base import Driver, Probe, ProbeResult, Unsupported

__all__ = [
    "BACKENDS", "ConfigError", "Driver", "NatlabError", "Probe", "ProbeResult", "Tracer", "Unsupported",
    "apply_set", "attach", "combined", "default_policy", "flatten", "knob_schema", "live_gateway", "load_scenario",
    "load_topology", "nat_class", "open_driver", "parse_assignments", "policy_from_dict", "policy_of_preset",
    "policy_to_dict", "pool_errors", "preset_names", "punch_plan", "realtime", "report", "unavailable",
    "requirement_of", "run_punch", "run_scenario_file", "runs_programs", "show_value",
]

BACKENDS = ("memory", "netns", "docker")
"""Backends ``natlab explore`` can bring a lab up on (see :func:`open_driver`)."""


def unavailable(backend: str) -> Optional[str]:
    """Why ``backend`` cannot run on this machine (needs root, NFQUEUE ...), or None."""
    from natlab.realisers.registry import unavailable as why_not

    return why_not(backend)


def load_topology(path: str | Path) -> Any:
    """A topology file as the frozen :class:`~natlab.topology.model.Topology`."""
    from natlab.topology.load import load

    return load(path)


def open_driver(topology: Any, seed: int, backend: str = "memory") -> Driver:
    """Bring ``topology`` up as a :class:`Driver`, the way ``natlab run`` does."""
    if backend not in BACKENDS:
        raise ConfigError(f"natlab explore does not support the {backend} backend yet", got=backend,
                          hint="one of " + ", ".join(BACKENDS))
    reason = unavailable(backend)
    if reason:
        raise ConfigError(f"the {backend} backend cannot run here: {reason}", got=backend,
                          hint="the memory backend needs nothing")
    from natlab.realisers.registry import open_driver as open_backend

    return open_backend(topology, seed, backend)


def attach(name: str, topology: Optional[str | Path] = None) -> tuple[Driver, Any, Path]:
    """A lab that is up (netns or Docker): its driver (closing it leaves the lab up), topology and file.

    The topology is the file the lab was brought up from (its state says which),
    or ``topology`` if given; it must have the lab's hosts and gateways.
    """
    from natlab.lab import attach as attach_lab
    from natlab.realisers.netns.build import renamed
    from natlab.realisers.registry import of_state

    lab = attach_lab(name)
    state = lab.state
    if state.phase != "up":
        raise ConfigError(f"lab {state.name} is not up yet (it is {state.phase})", got=state.name,
                          hint=f"wait for natlab up to finish, or natlab down {state.name}")
    file = topology or state.file
    if not file:
        raise ConfigError(f"lab {state.name} was brought up without a topology file", got=state.name,
                          hint=f"name the file it was made from: natlab explore FILE --lab {state.name}")
    path = Path(os.path.abspath(file))
    topo = renamed(load_topology(path), state.name)
    nodes = {"hosts": (sorted(h.name for h in topo.hosts), sorted(state.hosts)),
             "gateways": (sorted(g.name for g in topo.gateways), sorted(state.gateways))}
    for kind, (in_file, in_lab) in nodes.items():
        if in_file != in_lab:
            raise ConfigError(f"{path} is not the topology of lab {state.name}: its {kind} differ",
                              got=", ".join(in_file), hint=f"the lab has {', '.join(in_lab) or 'none'}; "
                                                           f"natlab explore FILE --lab {state.name}")
    return of_state(state).driver(lab, owns=False), topo, path


def live_gateway(driver: Driver, gateway: str) -> Optional[dict[str, Any]]:
    """What a real lab's gateway runs now (its control socket's ``status``: preset, policy, pool,
    clock offset), or None where the driver has no control sockets (the memory twin)."""
    lab = getattr(driver, "lab", None)
    if lab is None:
        return None
    from natlab.gateway.client import GatewayClient

    return GatewayClient(lab.state.gateways[gateway]["control_socket"], name=gateway).status()


def realtime(backend: str) -> bool:
    """Time on ``backend`` is the wall clock (state changes by itself: the page needs refreshing)."""
    from natlab.realisers.registry import get

    return bool(get(backend).realtime)


def pool_errors(topo: Any, gateway: str, pool: Sequence[str], policy: Any) -> list[ConfigError]:
    """Why ``pool`` cannot be ``gateway``'s: addresses that do not parse, are not on its outside
    network or are listed twice (RFC 4787 REQ-2 pools), or clash with its static NAT."""
    from natlab.topology.conflicts import policy_problems, pool_problems, surroundings

    around = surroundings(topo, gateway)
    problems = pool_problems(pool, around["outside"])
    before = policy_problems(policy, **around)
    problems += [p for p in policy_problems(policy, pool, around["inside"], around["outside"]) if p not in before]
    return [p.error(key=p.key if p.path[0] == "pool" else f"pool clashes with {p.key}") for p in problems]


def policy_of_preset(behaviour: str, overrides: Optional[dict[str, Any]] = None) -> Any:
    return resolve(behaviour, overrides or None).policy


def policy_from_dict(data: dict[str, Any]) -> Any:
    """A policy as a gateway's ``status`` reports it, validated into the value."""
    from natlab.behaviours.presets import policy_from_dict as validate

    return validate(data)


def default_policy() -> Any:
    """``Policy()``: what the RFCs recommend, every knob."""
    from natlab.engine.policy import Policy

    return Policy()


def apply_set(policy: Any, assignments: Sequence[str]) -> Any:
    """What ``set`` does to a policy (validated; raises ConfigError, changes nothing)."""
    return apply_overrides(policy, parse_assignments(assignments))


def knob_schema() -> dict[str, Any]:
    """The JSON Schema of a policy (for allowed values)."""
    return policy_schema()


def load_scenario(path: str | Path) -> Any:
    from natlab.scenario import load

    return load(path)


def runs_programs(backend: str) -> bool:
    """Hosts on ``backend`` run real programs (the built-in peer): netns, Docker; not the twin."""
    from natlab.realisers.registry import get

    return bool(get(backend).runs_programs)


def punch_plan(peers: tuple[str, str], rendezvous: str, timeout: float) -> Any:
    """A hole-punching attempt as the scenario ``punch`` step makes one (:class:`natlab.scenario.punch.Plan`)."""
    from natlab.scenario.punch import Plan

    return Plan(peers, rendezvous, timeout=timeout)


def run_punch(driver: Driver, plan: Any, tag: str, **kw: Any) -> Any:
    """Carry out a :func:`punch_plan` as the ``punch`` step does: the built-in peer on real hosts,
    its own core in process on the twin (see :mod:`natlab.scenario.punch`)."""
    from natlab.scenario.punch import run_punch as run

    return run(driver, plan, tag, **kw)


def run_scenario_file(path: str | Path, backend: str = "memory") -> Any:
    """Validate and run a scenario file; its :class:`~natlab.scenario.ScenarioReport`."""
    from natlab.scenario import run_scenario

    return run_scenario(load_scenario(path), backend)


# -- the packet's walk (memory backend only) -------------------------------------------------

def _summary(data: bytes) -> str:
    from natlab.packet.headers import summarize

    return summarize(bytes(data))


class _TracedEngine:
    """An engine that reports every verdict to ``hop``; everything else is the engine's."""

    def __init__(self, engine: Any, name: str, hop: Callable[[dict[str, Any]], None]) -> None:
        self._engine, self._name, self._hop = engine, name, hop

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._engine, attr)

    def process(self, data: Any, side: Any, now: float) -> Any:
        before = _summary(data)
        verdict = self._engine.process(data, side, now)
        kind = type(verdict).__name__.lower()
        entry: dict[str, Any] = {"t": "nat", "node": self._name, "side": getattr(side, "value", str(side)),
                                 "in": before, "verdict": kind}
        reason = getattr(verdict, "reason", None)
        if reason is not None:
            entry["reason"] = getattr(reason, "value", str(reason))
        else:
            entry["out"] = _summary(verdict.data)
        entry["events"] = [e.to_dict()["kind"] for e in getattr(verdict, "events", ()) or ()]
        self._hop(entry)
        return verdict


class Tracer:
    """Records the walk of every packet through a memory twin while :attr:`hops` is a list."""

    def __init__(self) -> None:
        self.hops: Optional[list[dict[str, Any]]] = None

    @classmethod
    def attach(cls, driver: Driver) -> Optional["Tracer"]:
        """A tracer on ``driver``'s twin, or None where the backend has none to watch."""
        net = getattr(driver, "net", None)
        if net is None or not hasattr(net, "nats") or not hasattr(net, "hosts"):
            return None
        tracer = cls()
        for name, nat in net.nats.items():
            gateway = nat.gateway  # the NAT's gateway service owns the engine
            if not isinstance(gateway.engine, _TracedEngine):
                gateway.engine = _TracedEngine(gateway.engine, name, tracer._add)
        for name, host in net.hosts.items():
            tracer._watch_stack(name, host.stack)
        tracer._watch_send(net)
        return tracer

    def _add(self, entry: dict[str, Any]) -> None:
        if self.hops is not None:
            self.hops.append(entry)

    def _watch_stack(self, name: str, stack: Any) -> None:
        receive = stack.receive

        def traced(data: bytes) -> list[bytes]:
            self._add({"t": "deliver", "node": name, "in": _summary(data)})
            answers = receive(data)
            for answer in answers:
                self._add({"t": "send", "node": name, "out": _summary(answer), "answer": True})
            return answers

        stack.receive = traced

    def _watch_send(self, net: Any) -> None:
        send = net.send

        def traced(host: str, packet: bytes) -> Any:
            self._add({"t": "send", "node": host, "out": _summary(packet)})
            outcome = send(host, packet)
            where, reason = getattr(outcome, "where", None), getattr(outcome, "reason", None)
            if reason is not None and where not in net.nats:
                self._add({"t": "drop", "node": where, "reason": reason})
            return outcome

        net.send = traced

    def start(self) -> None:
        self.hops = []

    def stop(self) -> list[dict[str, Any]]:
        hops, self.hops = self.hops or [], None
        return hops
