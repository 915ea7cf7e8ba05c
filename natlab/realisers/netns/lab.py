"""The Python face of a lab: ``with natlab.lab.up("two-homes.yaml") as lab: ...``."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from natlab.errors import LabError
from natlab.realisers.netns import namespaces as netns
from natlab.realisers.netns import build as runner
from natlab.realisers.netns.state import LabState, resolve_lab
from natlab.topology import load
from natlab.topology.model import Topology


class Lab:
    """A lab that is up. Use as a context manager to take it down on exit."""

    def __init__(self, state: LabState, topology: Optional[Topology] = None) -> None:
        self.state = state
        self.topology = topology

    @property
    def name(self) -> str:
        return self.state.name

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    def __repr__(self) -> str:
        return f"<Lab {self.name!r} hosts={list(self.state.hosts)}>"

    def down(self) -> None:
        runner.down(self.name)

    def netns(self, node: str) -> str:
        """Namespace of a host, gateway or router."""
        return self.state.netns_of(node)

    def argv(self, node: str, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside ``node``'s namespace."""
        ns = self.netns(node)
        if not netns.exists(ns):
            raise LabError(f"namespace of '{node}' is gone", got=ns,
                           hint=f"natlab down {self.name}, then up again")
        return ["ip", "netns", "exec", ns, *argv]

    def container_argv(self, node: str, argv: Sequence[str], tty: bool = False,
                       env: Optional[dict[str, str]] = None) -> list[str]:
        """Docker labs: ``argv`` wrapped to run inside ``node``'s container (its image).

        A container that has stopped (its app exited) is a :class:`LabError` giving
        the exit code and its last output, not the daemon's "is not running".
        """
        from natlab.realisers.docker import containers as docker
        docker.require_running(self.state, node)
        return docker.exec_argv(self.state, node, argv, tty=tty, env=env)

    def exec(self, node: str, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` in ``node`` and wait (keywords as for :func:`subprocess.run`)."""
        return subprocess.run(self.argv(node, argv), **kw)

    def popen(self, node: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start ``argv`` in ``node`` (keywords as for :class:`subprocess.Popen`)."""
        return subprocess.Popen(self.argv(node, argv), **kw)

    def host_address(self, host: str) -> IPv4Address:
        """A host's first address (a gateway's: its first pool address)."""
        if host in self.state.hosts:
            return IPv4Address(self.state.hosts[host]["addresses"][0])
        if host in self.state.gateways:
            return IPv4Address(self.state.gateways[host]["pool"][0])
        self.state.netns_of(host)  # raises LabNotFound naming the nodes
        raise LabError(f"'{host}' is a router; it has one address per network", got=host)

    def host_addresses(self, host: str) -> list[IPv4Address]:
        return [IPv4Address(a) for a in self.state.hosts[host]["addresses"]]


def up(spec_or_path: Union[Topology, str, Path], progress: runner.Progress = runner._quiet,
       backend: Optional[str] = None, name: Optional[str] = None) -> Lab:
    """Bring a topology (a spec or a file) up; the result undoes it on ``down()``/exit.

    ``backend`` (``netns`` or ``docker``) overrides the file's ``backend:`` key;
    ``name`` the file's ``name:`` (the same file up twice, as two labs).
    """
    topo = spec_or_path if isinstance(spec_or_path, Topology) else load(spec_or_path)
    if name is not None:
        topo = runner.renamed(topo, name)
    state = runner.up(topo, progress, backend=backend)
    return Lab(state, topo)


def attach(name: Optional[str] = None) -> Lab:
    """A :class:`Lab` for one that is already up (by name, or the only one)."""
    return Lab(resolve_lab(name))
