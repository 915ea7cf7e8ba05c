"""The one module of :mod:`natlab.explore` that imports natlab's internals.

Theory of operation
-------------------
The workbench drives a lab through the scenario :class:`Driver` API only
(probes, mappings, events, counters, set, configure, advance, reboot) and
validates what it saves with the scenario loader. Everything it needs from the
rest of natlab is re-exported or wrapped here, so when a module moves, this file
is the one to fix.

The only place that looks *inside* a backend is :class:`Tracer`: on the memory
backend it watches the twin's engines and host stacks to tell the packet's walk
(each NAT's verdict, the packet before and after it). It wraps instance
attributes, never changes behaviour, and is simply absent on other backends:
the walk then falls back to the probe result and the gateway events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from natlab.cli.output import nat_class, show_value
from natlab.cli.presets_cmd import requirement_of
from natlab.errors import ConfigError, NatlabError, report
from natlab.behaviours.overrides import flatten, parse_assignments
from natlab.behaviours.presets import apply_overrides, policy_schema, policy_to_dict, preset_names, resolve
from natlab.realisers.base import Driver, Probe, ProbeResult, Unsupported

__all__ = [
    "BACKENDS", "ConfigError", "Driver", "NatlabError", "Probe", "ProbeResult", "Tracer", "Unsupported",
    "apply_set", "default_policy", "flatten", "knob_schema", "load_scenario", "load_topology", "nat_class", "open_driver",
    "parse_assignments", "policy_of_preset", "policy_to_dict", "preset_names", "report", "unavailable",
    "requirement_of", "run_scenario_file", "show_value",
]

BACKENDS = ("memory", "netns")
"""Backends ``natlab explore`` can open today; the others say so (see :func:`open_driver`)."""


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
                          hint="use the memory backend (the default) or netns; docker and --lab are planned")
    reason = unavailable(backend)
    if reason:
        raise ConfigError(f"the {backend} backend cannot run here: {reason}", got=backend,
                          hint="the memory backend needs nothing")
    from natlab.realisers.registry import open_driver as open_backend

    return open_backend(topology, seed, backend)


def policy_of_preset(behaviour: str, overrides: Optional[dict[str, Any]] = None) -> Any:
    return resolve(behaviour, overrides or None).policy


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
