"""The ``docker`` realiser: the netns lab, each node's namespace held by a container.

It is :class:`~natlab.realisers.netns.realiser.NetnsRealiser` with other steps
where Docker differs (see :mod:`natlab.realisers.docker.containers` for why it is
wired with veths rather than Docker networks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from natlab.realisers.base import Unavailable
from natlab.realisers.netns.realiser import NetnsRealiser

if TYPE_CHECKING:
    from natlab.realisers.netns.state import LabState
    from natlab.topology.model import Gateway, Host, Node, Topology


class DockerRealiser(NetnsRealiser):
    name = "docker"
    summary = "a container per node (the natlab image, or the host's own), wired like netns (root)"
    scenario_default = False
    runs_matrix = False

    def unavailable(self) -> Optional[Unavailable]:
        found = super().unavailable()
        if found is not None:
            return Unavailable(self.name, found.reason, needs_root=found.needs_root)
        from natlab.realisers.docker import containers

        reason = containers.unavailable()
        return Unavailable(self.name, reason) if reason else None

    def check_topology(self, topo: "Topology") -> None:
        """Images, env and volumes are what this realiser is for."""

    def preflight(self, topo: "Topology") -> None:
        from natlab.realisers.docker import containers

        containers.preflight(topo)

    def plan(self, topo: "Topology", state: "LabState") -> None:
        from natlab.realisers.docker import containers

        containers.plan(topo, state)

    def make_node(self, state: "LabState", node: "Node", forwards: bool) -> None:
        # A gateway container cannot write /proc/sys: its namespace forwards from the
        # start, and the daemon's DROP rules close it when it stops.
        from natlab.realisers.docker import containers
        from natlab.realisers.netns import namespaces

        containers.create_node(state, node, namespaces.FORWARDER_SYSCTLS if forwards else {})

    def start_gateway(self, topo: "Topology", state: "LabState", gw: "Gateway") -> None:
        from natlab.realisers.docker import containers
        from natlab.realisers.netns.build import gateway_spec, prepare_datapath

        spec = gateway_spec(topo, gw, state.run_dir)
        prepare_datapath(spec)  # e.g. DPDK: offloads off on the veth peers, the kernel's copy dropped
        containers.start_gateway(state, spec)

    def start_host(self, state: "LabState", host: "Host") -> Optional[str]:
        from natlab.realisers.docker import containers

        if "app" in state.containers.get(host.name, {}):
            containers.start_app(state, host)
            return f"container of {host.name}"
        return super().start_host(state, host)

    def remove(self, name: str, recorded: bool) -> None:
        from natlab.realisers.docker import containers

        containers.remove_lab(name, required=recorded)

    def labs_left(self) -> set[str]:
        from natlab.realisers.docker import containers

        return containers.labelled_labs()

    def lab_left(self, name: str) -> bool:
        from natlab.realisers.docker import containers

        return bool(containers.lab_containers(name))

    def exec_argv(self, state: "LabState", node: str, argv: Sequence[str], tty: bool,
                  env: Optional[dict[str, str]] = None) -> list[str]:
        """Inside the node's container (its image's tools), not just its namespace."""
        from natlab.realisers.netns.lab import Lab

        return Lab(state).container_argv(node, argv, tty=tty, env=env)

    def shell(self, state: "LabState", node: str, tty: bool) -> tuple[list[str], dict[str, str]]:
        import os

        env = {"PS1": f"[{state.name}:{node}] # ", "NATLAB_LAB": state.name, "NATLAB_NODE": node}
        return self.exec_argv(state, node, ["sh", "-i"], tty, env=env), dict(os.environ)

    def host_extras(self, state: "LabState") -> dict[str, dict[str, str]]:
        """Each host's image and whether its app runs."""
        from natlab.realisers.docker import containers

        return containers.host_apps(state)
