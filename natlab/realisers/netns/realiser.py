"""The ``netns`` realiser: one network namespace per node on this machine.

Nodes are namespaces named ``natlab-<lab>-<node>``, links are veths into bridges
in the lab's switch namespace (:mod:`natlab.realisers.netns.namespaces`),
gateways are ``python -m natlab.gateway`` processes (the NFQUEUE datapath),
programs run with ``ip netns exec``. :mod:`natlab.realisers.netns.build` is the
shell that brings a lab up and down; it asks the realiser (this one, or Docker's
subclass) for the few steps that differ: how a node is made, how its gateway
and its host program start, what else ``down`` removes.

Every method imports what it needs, so choosing a realiser by name costs nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
from typing import TYPE_CHECKING, Any, Optional, Sequence

from natlab.realisers.base import Driver, Unavailable

if TYPE_CHECKING:
    from natlab.realisers.netns.state import LabState
    from natlab.topology.model import Gateway, Host, Node, Topology

NEEDS_ROOT = "needs root (natlab creates network namespaces, veths and NFQUEUE rules)"
NO_NFQUEUE = "NetfilterQueue is not installed (pip install 'natlab[nfqueue]')"


class NetnsRealiser:
    name = "netns"
    summary = "network namespaces, veths and bridges on this machine (root)"
    needs_root = True
    runs_programs = True
    makes_labs = True
    realtime = True
    scenario_default = True
    runs_matrix = True

    def __repr__(self) -> str:
        return f"<realiser {self.name}>"

    # --- the Realiser protocol -----------------------------------------------------

    def unavailable(self) -> Optional[Unavailable]:
        if os.geteuid() != 0:
            return Unavailable(self.name, NEEDS_ROOT, needs_root=True)
        for tool in ("ip", "iptables"):
            if shutil.which(tool) is None:
                return Unavailable(self.name, f"needs the '{tool}' command (apt-get install iproute2 iptables)")
        if importlib.util.find_spec("netfilterqueue") is None:
            return Unavailable(self.name, NO_NFQUEUE)
        return None

    def open(self, topology: "Topology", seed: Optional[int] = None) -> Driver:
        """A fresh lab of ``topology`` (renamed NAME-2 ... if its name is taken)."""
        from natlab.realisers.netns.build import free_lab_name
        from natlab.realisers.netns.lab import up

        named = dataclasses.replace(topology, name=free_lab_name(topology))
        return self.driver(up(named, backend=self.name), owns=True)

    def driver(self, lab: Any, *, owns: bool = False) -> Driver:
        """The driver of a lab that is up (``owns``: ``close()`` takes it down)."""
        from natlab.realisers.netns.driver import NetnsDriver

        driver = NetnsDriver(lab, owns=owns)
        driver.backend = self.name
        return driver

    # --- steps of natlab.realisers.netns.build that differ per realiser -------------

    def check_topology(self, topo: "Topology") -> None:
        """What this realiser cannot honour in a topology is a TopologyError naming the key."""
        from natlab.errors import TopologyError

        imaged = [h.name for h in topo.hosts if h.image or h.env or h.volumes]
        if imaged:
            raise TopologyError("image, env and volumes need the docker backend", got=imaged[0],
                                file=topo.file, key=f"hosts.{imaged[0]}",
                                hint="natlab up --backend docker FILE, or backend: docker")

    def preflight(self, topo: "Topology") -> None:
        """Checks of its own before anything is created (the shell checks root and tools)."""

    def plan(self, topo: "Topology", state: "LabState") -> None:
        """Record in the state what this realiser will create, beyond namespaces."""

    def make_node(self, state: "LabState", node: "Node", forwards: bool) -> None:
        from natlab.realisers.netns import namespaces
        from natlab.realisers.netns.build import stub_gateways

        closed = node.kind == "gateway" and not stub_gateways()
        sysctls = namespaces.GATEWAY_SYSCTLS if closed else namespaces.FORWARDER_SYSCTLS if forwards else {}
        namespaces.create(namespaces.ns_name(state.name, node.name), sysctls)

    def start_gateway(self, topo: "Topology", state: "LabState", gw: "Gateway") -> None:
        from natlab.realisers.netns.build import start_gateway_process

        start_gateway_process(topo, state, gw)

    def start_host(self, state: "LabState", host: "Host") -> Optional[str]:
        """Start the host's ``command``; what to say while doing it (None: nothing to start)."""
        from natlab.realisers.netns.build import start_command

        if not host.command:
            return None
        start_command(state, host.name, host.command)
        return f"command on {host.name}"

    def remove(self, name: str, recorded: bool) -> None:
        """Remove what ``down`` would not find by namespace (``recorded``: the state names this realiser)."""

    def labs_left(self) -> set[str]:
        """Labs something of this realiser is left of, beyond namespaces and run directories."""
        return set()

    def lab_left(self, name: str) -> bool:
        return False

    # --- the CLI ------------------------------------------------------------------

    def exec_argv(self, state: "LabState", node: str, argv: Sequence[str], tty: bool,
                  env: Optional[dict[str, str]] = None) -> list[str]:
        """``natlab exec``: ``argv`` run in ``node`` (``env`` is the caller's to pass)."""
        from natlab.realisers.netns.lab import Lab

        return Lab(state).argv(node, argv)

    def shell(self, state: "LabState", node: str, tty: bool) -> tuple[list[str], dict[str, str]]:
        """``natlab shell``: argv and environment of an interactive shell in ``node``."""
        from pathlib import Path

        sh = os.environ.get("SHELL") or "/bin/sh"
        argv = [sh, "--norc", "-i"] if Path(sh).name == "bash" else [sh, "-i"]
        env = {**os.environ, "PS1": f"[{state.name}:{node}] \\w\\$ ", "NATLAB_LAB": state.name,
               "NATLAB_NODE": node}
        return self.exec_argv(state, node, argv, tty), env

    def host_extras(self, state: "LabState") -> dict[str, dict[str, str]]:
        """More columns of ``natlab status``'s host table, per host (none here)."""
        return {}
