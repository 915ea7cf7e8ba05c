"""The state file of a lab: ``/run/natlab/<lab>/state.json``.

Theory of operation
-------------------
The realiser records its *intent* before acting: a namespace's name is saved
before the namespace is created, a process's entry before it is started and its
PID right after. So whatever happens (a crash, ``kill -9``), ``natlab down`` finds
a record of everything that might exist. Files are written to a temporary name
and renamed, so a reader never sees half a file; a file that is unreadable
anyway (edited by hand, disk full) is reported as :class:`LabError`, and
``natlab down`` falls back to sweeping namespaces by tag.

Other commands (``mappings``, ``events``, ``set`` ...) find a gateway's control
socket here through :func:`resolve_lab`, or :func:`resolve_node` when a node's name
alone may tell which lab is meant. Run directories are root's (mode 0700): reading
one as another user is :class:`NotPrivileged`, one line, not a traceback.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from natlab.errors import LabError, LabNotFound, NotPrivileged
from natlab.realisers.registry import DEFAULT as DEFAULT_REALISER

STATE_FILE = "state.json"


def run_root() -> Path:
    """Where run directories live; ``NATLAB_RUN_DIR`` overrides (tests)."""
    return Path(os.environ.get("NATLAB_RUN_DIR", "/run/natlab"))


def run_dir_of(name: str) -> Path:
    return run_root() / name


@dataclass
class LabState:
    name: str
    run_dir: str
    file: Optional[str] = None
    created: float = field(default_factory=time.time)
    phase: str = "building"
    """``building`` while ``up`` runs, ``up`` once finished."""
    namespaces: list[str] = field(default_factory=list)
    """Every namespace the lab may have created, switch namespace included."""
    gateways: dict[str, dict[str, Any]] = field(default_factory=dict)
    """name -> {netns, pid, pid_start, spec_path, control_socket, log_path, behaviour,
    inside, outside, address, pool}"""
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """name -> {netns, addresses, network, pids, pid_starts}"""
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """name -> {subnet, gateway}"""
    routers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """name -> {netns, addresses: {network: address}}"""
    backend: str = DEFAULT_REALISER
    """``netns`` or ``docker`` (:mod:`natlab.realisers.docker.containers`)."""
    image: Optional[str] = None
    """Docker backend: the natlab image its containers run."""
    containers: dict[str, dict[str, str]] = field(default_factory=dict)
    """Docker backend: node -> {role: container name}; roles sandbox, gateway, app."""

    @property
    def path(self) -> Path:
        return Path(self.run_dir) / STATE_FILE

    @classmethod
    def new(cls, name: str, file: Optional[str] = None) -> "LabState":
        return cls(name=name, run_dir=str(run_dir_of(name)), file=file)

    @classmethod
    def load(cls, name: str) -> "LabState":
        path = run_dir_of(name) / STATE_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise LabNotFound(f"no lab named '{name}' is up", got=name,
                              hint="natlab status lists the labs that are up") from None
        except PermissionError:
            raise not_privileged(path) from None
        try:
            data = json.loads(text)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise LabError(f"state file of lab '{name}' is unreadable", got=str(path),
                           hint=f"natlab down {name} still removes it ({exc})") from None

    def save(self) -> None:
        """Write atomically; the run directory is created with mode 0700."""
        run_dir = Path(self.run_dir)
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        tmp = run_dir / f".{STATE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str))
        os.replace(tmp, self.path)

    def nodes(self, kinds: tuple[str, ...] = ()) -> list[str]:
        """Node names of the given kinds (``hosts``, ``gateways``, ``routers``; all if empty)."""
        tables = {"hosts": self.hosts, "gateways": self.gateways, "routers": self.routers}
        return [n for kind in (kinds or tuple(tables)) for n in tables[kind]]

    def netns_of(self, node: str) -> str:
        """The namespace of a host, gateway or router, by name."""
        for table in (self.hosts, self.gateways, self.routers):
            if node in table:
                return table[node]["netns"]
        names = ", ".join([*self.hosts, *self.gateways, *self.routers])
        raise LabNotFound(f"lab '{self.name}' has no node named '{node}'", got=node,
                          hint=f"nodes are: {names}")


def not_privileged(path: Path) -> NotPrivileged:
    """The error for a run directory or socket only root may read."""
    return NotPrivileged("lab state is readable by root only", got=str(path),
                         hint="run natlab as root (sudo natlab ...)")


def list_labs() -> list[str]:
    """Names of labs with a run directory (up, half-built or half-removed)."""
    root = run_root()
    try:
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except PermissionError:
        raise not_privileged(root) from None


def labs_up() -> list[str]:
    """Names of labs with a state file (up or being built)."""
    try:
        return [lab for lab in list_labs() if (run_dir_of(lab) / STATE_FILE).exists()]
    except PermissionError:
        raise not_privileged(run_root()) from None


def resolve_lab(name: Optional[str]) -> LabState:
    """The named lab, or the only lab that is up when ``name`` is None."""
    if name is not None:
        return LabState.load(name)
    labs = labs_up()
    if not labs:
        raise LabNotFound("no lab is up", hint="natlab up FILE")
    if len(labs) > 1:
        raise LabNotFound("several labs are up; name one", got=", ".join(labs),
                          hint="pass --lab NAME")
    return LabState.load(labs[0])


def resolve_node(node: str, name: Optional[str] = None, kinds: tuple[str, ...] = ()) -> LabState:
    """The lab holding ``node``: the named one, else the only lab up that has it.

    ``kinds`` narrows what counts (``("gateways",)`` for gateway commands). With one
    lab up, that lab is returned even without the node, so its own error lists its
    nodes; with several, the candidates are named as ``--lab`` choices.
    """
    if name is not None:
        return LabState.load(name)
    states = [_load_or_none(lab) for lab in labs_up()]
    states = [s for s in states if s is not None]
    if len(states) == 1:
        return states[0]
    holders = [s for s in states if node in s.nodes(kinds)]
    if len(holders) == 1:
        return holders[0]
    if not holders:
        what = "a gateway" if kinds == ("gateways",) else "a node"
        raise LabNotFound(f"no lab that is up has {what} named '{node}'", got=node,
                          hint=f"labs up: {', '.join(s.name for s in states) or 'none'}")
    choices = " or ".join(f"--lab {s.name}" for s in holders)
    raise LabNotFound(f"'{node}' is in several labs; name one", got=", ".join(s.name for s in holders),
                      hint=f"pass {choices}")


def _load_or_none(name: str) -> Optional[LabState]:
    try:
        return LabState.load(name)
    except LabNotFound:
        return None  # removed meanwhile
    except LabError:
        return None  # unreadable: it has no nodes to offer
