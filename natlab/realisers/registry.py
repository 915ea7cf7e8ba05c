"""Where a scenario can run, and bringing its lab up there as a :class:`Driver`.

``netns`` is the real thing (root, namespaces, NFQUEUE); ``memory`` its
in-process twin (no root, a manual clock); ``docker`` realises the same
topology with containers. :func:`check` says why one cannot run here (a
:class:`Unavailable`; :func:`unavailable` just its text), so callers skip with
that reason instead of failing or skipping silently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import importlib.util
import os
import shutil
from typing import Any, Optional

from natlab.realisers.base import Driver
from natlab.topology.model import Topology

__all__ = ["Unavailable", "check", "open_driver", "unavailable"]


@dataclass(frozen=True)
class Unavailable:
    """Why a backend cannot run on this machine."""

    backend: str
    reason: str
    """What is missing, with how to get it: "needs root (...)", "NetfilterQueue is not installed (pip ...)"."""
    needs_root: bool = False
    """The only problem found so far is privileges: root would do, or the memory backend."""


NEEDS_ROOT = "needs root (natlab creates network namespaces, veths and NFQUEUE rules)"
NO_NFQUEUE = "NetfilterQueue is not installed (pip install 'natlab[nfqueue]')"


def check(backend: str) -> Optional[Unavailable]:
    """Why ``backend`` cannot run on this machine, or None if it can."""
    if backend == "memory":
        return None
    if os.geteuid() != 0:
        return Unavailable(backend, NEEDS_ROOT, needs_root=True)
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return Unavailable(backend, f"needs the '{tool}' command (apt-get install iproute2 iptables)")
    if importlib.util.find_spec("netfilterqueue") is None:
        return Unavailable(backend, NO_NFQUEUE)
    if backend == "docker":
        reason = _docker_unavailable()
        return Unavailable(backend, reason) if reason else None
    return None


def unavailable(backend: str) -> Optional[str]:
    """Why ``backend`` cannot run on this machine (the text of :func:`check`), or None if it can."""
    found = check(backend)
    return found.reason if found else None


def _docker_unavailable() -> Optional[str]:
    try:
        from natlab.realisers.docker import containers as docker_backend  # type: ignore[attr-defined]
    except ImportError:
        return "the Docker backend is not installed in this natlab"
    reason = getattr(docker_backend, "unavailable", None)
    return reason() if callable(reason) else None


def free_lab_name(topo: Topology) -> str:
    """The topology's own name, or NAME-2, NAME-3 ... if a lab already has it."""
    from natlab.realisers.netns import namespaces as netns
    from natlab.realisers.netns.state import list_labs

    taken = set(list_labs()) | netns.all_tagged_labs()
    if topo.name not in taken:
        return topo.name
    for n in range(2, 1000):
        name = f"{topo.name[:26]}-{n}"
        if name not in taken:
            return name
    return f"{topo.name[:24]}-{os.getpid() % 100000}"


def open_driver(topo: Topology, seed: int, backend: str) -> Driver:
    """Bring ``topo`` up on ``backend``; the driver takes it down on ``close()``."""
    if backend == "memory":
        from natlab.realisers.memory.driver import MemoryDriver

        return MemoryDriver(topo, seed)
    import natlab.lab
    from natlab.realisers.netns.driver import NetnsDriver

    named = dataclasses.replace(topo, name=free_lab_name(topo))
    lab: Any = natlab.lab.up(named) if backend == "netns" else natlab.lab.up(named, backend=backend)
    driver = NetnsDriver(lab, owns=True)
    driver.backend = backend
    return driver
