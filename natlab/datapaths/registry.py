"""The datapaths by name: the one list, and the one place a name is looked up.

A new datapath is a folder ``natlab/datapaths/NAME/`` whose package exports a
class with the :class:`~natlab.datapaths.base.Datapath` attributes and methods,
and one line in :data:`DATAPATHS` (see docs/architecture.md for the skeleton).
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

from natlab.datapaths.base import Datapath
from natlab.errors import UnknownBackend

__all__ = ["DATAPATHS", "DEFAULT", "get", "names"]


def _nfqueue(**kw: Any) -> Datapath:
    from natlab.datapaths.nfqueue import NfqueueDatapath

    return NfqueueDatapath(**kw)


def _memory(**kw: Any) -> Datapath:
    from natlab.datapaths.memory import MemoryDatapath

    return MemoryDatapath(**kw)


def _kernel_cache(**kw: Any) -> Datapath:
    from natlab.datapaths.kernelcache import KernelCacheDatapath

    return KernelCacheDatapath(**kw)


DATAPATHS: dict[str, Callable[..., Datapath]] = {
    "nfqueue": _nfqueue,
    "memory": _memory,
    "kernel-cache": _kernel_cache,
}
"""Name -> factory (imported on use: a gateway process loads only its own datapath)."""
DEFAULT = "nfqueue"
"""The datapath of gateways in kernel labs (``GatewaySpec.datapath``'s default)."""


def names() -> tuple[str, ...]:
    return tuple(DATAPATHS)


def get(name: str, **kw: Any) -> Datapath:
    """The datapath called ``name`` (``kw`` for its constructor: memory takes its network)."""
    factory = DATAPATHS.get(name)
    if factory is None:
        close = difflib.get_close_matches(str(name), names(), n=1)
        hint = (f"did you mean '{close[0]}'? " if close else "") + "one of " + ", ".join(names())
        raise UnknownBackend("unknown datapath", got=name, hint=hint)
    return factory(**kw)
