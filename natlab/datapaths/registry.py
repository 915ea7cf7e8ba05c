"""The datapaths by name: the one list, and the one place a name is looked up.

A new datapath is a folder ``natlab/datapaths/NAME/`` whose package exports a
class with the :class:`~natlab.datapaths.base.Datapath` attributes and methods,
and one line in :data:`DATAPATHS` (see docs/architecture.md for the skeleton).
"""

from __future__ import annotations

import difflib
import importlib
import os
from typing import Any, Callable, Optional

from natlab.datapaths import choice
from natlab.datapaths.base import Datapath
from natlab.errors import UnknownBackend

__all__ = ["DATAPATHS", "DEFAULT", "ENV", "FALLBACK", "available", "choose", "chosen", "default", "fallback_warning", "forced_options", "get", "names",
           "refuses", "unavailable"]


def _nfqueue(**kw: Any) -> Datapath:
    from natlab.datapaths.nfqueue import NfqueueDatapath

    return NfqueueDatapath(**kw)


def _memory(**kw: Any) -> Datapath:
    from natlab.datapaths.memory import MemoryDatapath

    return MemoryDatapath(**kw)


class _Missing:
    """A datapath whose package this installation lacks: it says so, and does nothing else."""

    in_process = False

    def __init__(self, name: str, module: str, why: str) -> None:
        self.name, self.summary = name, f"not installed ({module})"
        self._why = f"{module} cannot be imported here: {why}"

    def unavailable(self) -> Optional[str]:
        return self._why

    def gateway(self, spec: Any, engine: Any, policy: Any) -> Any:
        raise UnknownBackend(f"the {self.name} datapath is not available", got=self._why)

    serve = gateway


def _lazy(name: str, module: str, attr: str) -> Callable[..., Datapath]:
    def factory(**kw: Any) -> Datapath:
        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError as err:
            return _Missing(name, module, str(err))  # type: ignore[return-value]
        return cls(**kw)
    return factory


DATAPATHS: dict[str, Callable[..., Datapath]] = {
    "nfqueue": _nfqueue,
    "memory": _memory,
    "kernel-cache": _lazy("kernel-cache", "natlab.datapaths.kernelcache", "KernelCacheDatapath"),
    "dpdk": _lazy("dpdk", "natlab.datapaths.dpdk", "DpdkDatapath"),
}
"""Name -> factory (imported on use: a gateway process loads only its own datapath)."""
DEFAULT = "kernel-cache"
"""The datapath of gateways in kernel labs when nobody chose one (``GatewaySpec.datapath``'s
default): the engine decides exactly what it decides on nfqueue, established flows run at
kernel speed."""
FALLBACK = "nfqueue"
"""What gateways run on when nobody chose a datapath and DEFAULT cannot run here: the same
decisions, every packet through the engine (:func:`fallback_warning` says so, once a lab)."""


ENV = "NATLAB_DATAPATH"
"""Forces one datapath on every gateway a lab starts (``natlab up/run/matrix --datapath``
set it; so does the pytest plugin's ``--natlab-datapath``)."""

LAB_DATAPATHS = ("nfqueue", "kernel-cache", "dpdk")
"""The datapaths a kernel lab's gateway can run on (memory is the in-memory network's)."""


def names() -> tuple[str, ...]:
    return tuple(DATAPATHS)


def hook(name: Optional[str], attr: str) -> Any:
    """Datapath ``name``'s optional hook ``attr`` (e.g. dpdk's ``prepare``, ``forget``,
    ``capture_point``), or None: it has none, or no datapath has that name (an old state file)."""
    return getattr(get(name), attr, None) if name in DATAPATHS else None


def check(name: str) -> str:
    """``name`` if it is a lab datapath; else UnknownBackend with the closest name."""
    if name in LAB_DATAPATHS:
        return name
    close = difflib.get_close_matches(str(name), LAB_DATAPATHS, n=1)
    hint = (f"did you mean '{close[0]}'? " if close else "") + "one of " + ", ".join(LAB_DATAPATHS)
    raise UnknownBackend("unknown datapath", got=name, hint=hint)


def choose(text: str) -> str:
    """``NAME[:KEY=VALUE]...`` checked (name and options, :mod:`.choice`), as ENV holds it."""
    return str(choice.parse(text, check))


def chosen(topology_value: Optional[str] = None) -> str:
    """The datapath a lab gateway runs on: ``$NATLAB_DATAPATH``, else the topology's, else DEFAULT."""
    forced = os.environ.get(ENV, "").strip()
    if forced:
        return choice.parse(forced, check).name
    return topology_value or default()


def forced_options(name: str) -> dict[str, Any]:
    """The options ``$NATLAB_DATAPATH`` sets for datapath ``name`` (``dpdk:workers=2``), over
    each gateway's own; {} if it sets none or forces another datapath."""
    forced = os.environ.get(ENV, "").strip()
    if not forced:
        return {}
    picked = choice.parse(forced, check)
    return dict(picked.options) if picked.name == name else {}


def default() -> str:
    """DEFAULT if it can run here, else FALLBACK (nobody asked for DEFAULT by name)."""
    return DEFAULT if unavailable(DEFAULT) is None else FALLBACK


def fallback_warning() -> Optional[str]:
    """The line to print when a gateway nobody gave a datapath falls back (what, got, hint); else None."""
    why = unavailable(DEFAULT)
    if why is None:
        return None
    return (f"natlab: warning: the default datapath {DEFAULT} is unavailable here ({why}); "
            f"gateways without a 'datapath:' run on {FALLBACK}: the same decisions, every packet "
            f"through the engine, slower (install what is missing, or --datapath {FALLBACK} to choose it)")


def unavailable(name: str) -> Optional[str]:
    """Why the datapath ``name`` cannot run on this machine, or None."""
    return get(name).unavailable()


def refuses(name: str, policy: Any) -> Optional[str]:
    """What of a gateway's ``policy`` the datapath ``name`` cannot serve (its optional
    ``refuses(policy)``), or None."""
    check_policy = getattr(get(name), "refuses", None)
    return None if check_policy is None else check_policy(policy)


def available() -> tuple[str, ...]:
    """The lab datapaths that can run here (their ``unavailable()`` is None)."""
    return tuple(n for n in LAB_DATAPATHS if unavailable(n) is None)


def get(name: str, **kw: Any) -> Datapath:
    """The datapath called ``name`` (``kw`` for its constructor: memory takes its network)."""
    factory = DATAPATHS.get(name)
    if factory is None:
        close = difflib.get_close_matches(str(name), names(), n=1)
        hint = (f"did you mean '{close[0]}'? " if close else "") + "one of " + ", ".join(names())
        raise UnknownBackend("unknown datapath", got=name, hint=hint)
    return factory(**kw)
