"""The realisers by name: the one list of backends, and the one place a name is looked up.

``netns`` is the real thing (root, namespaces, NFQUEUE); ``memory`` its
in-process twin (no root, a manual clock); ``docker`` realises the same
topology with containers. :func:`get` turns a name into the
:class:`~natlab.realisers.base.Realiser` (an unknown one is an
:class:`~natlab.errors.UnknownBackend` with "did you mean"); callers then ask
its traits, never its name. :func:`check` says why one cannot run here (a
:class:`Unavailable`; :func:`unavailable` just its text), so callers skip with
that reason instead of failing or skipping silently.

A new realiser is a folder ``natlab/realisers/NAME/`` with a class that has the
protocol's attributes and methods, and one line in :data:`REALISERS`.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Optional

from natlab.errors import ConfigError, UnknownBackend
from natlab.realisers.base import Driver, Realiser, Unavailable
from natlab.realisers.docker.realiser import DockerRealiser
from natlab.realisers.memory.realiser import MemoryRealiser
from natlab.realisers.netns.realiser import NetnsRealiser

if TYPE_CHECKING:
    from natlab.topology.model import Topology

__all__ = ["DEFAULT", "REALISERS", "Unavailable", "backend_of", "check", "get", "lab_realiser", "names",
           "open_driver", "unavailable"]

REALISERS: dict[str, Realiser] = {r.name: r for r in (NetnsRealiser(), MemoryRealiser(), DockerRealiser())}
"""Every realiser, by name, in the order help texts list them."""
DEFAULT = "netns"
"""What labs use when neither the caller nor the topology file names a realiser."""


def names(**traits: bool) -> tuple[str, ...]:
    """Realiser names, optionally only those with the given traits (``names(makes_labs=True)``)."""
    return tuple(n for n, r in REALISERS.items() if all(getattr(r, k) == v for k, v in traits.items()))


def get(name: str, *, among: Optional[tuple[str, ...]] = None, what: str = "backend") -> Realiser:
    """The realiser called ``name`` (one of ``among``, default all); else UnknownBackend, "did you mean"."""
    known = names() if among is None else among
    if name in known:
        return REALISERS[name]
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = (f"did you mean '{close[0]}'? " if close else "") + "one of " + ", ".join(known)
    raise UnknownBackend(f"unknown {what}", got=name, hint=hint)


def check(backend: str) -> Optional[Unavailable]:
    """Why ``backend`` cannot run on this machine, or None if it can."""
    return get(backend).unavailable()


def unavailable(backend: str) -> Optional[str]:
    """Why ``backend`` cannot run on this machine (the text of :func:`check`), or None if it can."""
    found = check(backend)
    return found.reason if found else None


def open_driver(topo: "Topology", seed: Optional[int], backend: str) -> Driver:
    """Bring ``topo`` up on ``backend``; the driver takes it down on ``close()``."""
    return get(backend).open(topo, seed)


def backend_of(topo: "Topology", requested: Optional[str]) -> str:
    """The realiser a lab of ``topo`` uses: the caller's, else the file's, else :data:`DEFAULT`;
    checked against the file (a host image needs a realiser that runs images)."""
    return lab_realiser(topo, requested).name


def lab_realiser(topo: "Topology", requested: Optional[str]) -> Any:
    """As :func:`backend_of`, the realiser itself (one that makes labs: ``natlab up``)."""
    name = requested or topo.backend or DEFAULT
    realiser = get(name)
    if not realiser.makes_labs:
        raise ConfigError(f"the {name} backend makes no lab to bring up", got=name,
                          hint="one of " + ", ".join(names(makes_labs=True)))
    realiser.check_topology(topo)
    return realiser


def of_state(state: Any) -> Any:
    """The realiser that made a lab that is up (its state file says which)."""
    return get(state.backend, among=names(makes_labs=True))
