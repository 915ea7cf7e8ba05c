"""libnftables in process: nftables' own Python binding (Debian's python3-nftables).

Why this and not ``nft -f -``: the cache changes the ruleset on every loop
iteration that installed or retired an entry, and reads counters before every
timer decision; libnftables takes the same text as ``nft -f`` without a fork
and an exec each time (about 7 µs per element in a batch here, a fork alone
costs ~1 ms). The binding is a single ctypes module shipped with nftables
(``apt-get install python3-nftables``); it is not on PyPI under its own name,
so a virtualenv without the system site-packages loads it from Debian's
``dist-packages`` by path (:func:`load`).

Everything here runs in the caller's network namespace: the gateway process
lives in the gateway's, and never touches any other.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

from natlab.errors import BackendUnavailable, LabError

SYSTEM_DIRS = (Path("/usr/lib/python3/dist-packages"), Path("/usr/local/lib/python3/dist-packages"))
"""Where Debian and Ubuntu put python3-nftables (``nftables/__init__.py``)."""
HINT = "apt-get install nftables python3-nftables"


def load() -> Optional[ModuleType]:
    """The ``nftables`` module: importable as is, or from the system's dist-packages; None if absent."""
    if "nftables" in sys.modules:
        return sys.modules["nftables"]
    if importlib.util.find_spec("nftables") is not None:
        import nftables

        return nftables
    for folder in SYSTEM_DIRS:
        init = folder / "nftables" / "__init__.py"
        if not init.is_file():
            continue
        spec = importlib.util.spec_from_file_location("nftables", init,
                                                      submodule_search_locations=[str(init.parent)])
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules["nftables"] = module
        try:
            spec.loader.exec_module(module)
        except Exception:  # noqa: BLE001 - a broken install is "not available", never a crash
            del sys.modules["nftables"]
            return None
        return module
    return None


def missing() -> Optional[str]:
    """Why libnftables cannot be used here, or None."""
    module = load()
    if module is None:
        return f"python3-nftables is not installed ({HINT})"
    try:
        module.Nftables()
    except OSError as err:  # libnftables.so.1 missing
        return f"libnftables cannot be loaded: {err} ({HINT})"
    return None


class Nft:
    """libnftables contexts: ``run(script)`` applies a script as one transaction; ``text``/``json`` list."""

    def __init__(self) -> None:
        module = load()
        if module is None:
            raise BackendUnavailable("python3-nftables is not installed", hint=HINT)
        self._ctx = module.Nftables()
        self._ctx.set_json_output(False)
        self._json = module.Nftables()
        self._json.set_json_output(True)
        self.calls = 0

    def run(self, script: str) -> None:
        """Apply ``script`` (nft's own language; many lines are one transaction); LabError if refused."""
        if not script:
            return
        self.calls += 1
        rc, _out, err = self._ctx.cmd(script)
        if rc != 0:
            raise LabError("nft refused a cache update", got=err.strip()[-400:] or rc,
                           hint="see the gateway's log; the kernel needs nf_tables with set timeouts")

    def text(self, command: str) -> str:
        """The text output of one listing command."""
        return self._list(self._ctx, command)

    def json(self, command: str) -> str:
        """The JSON output of one listing command."""
        return self._list(self._json, command)

    def _list(self, ctx, command: str) -> str:
        self.calls += 1
        rc, out, err = ctx.cmd(command)
        if rc != 0:
            raise LabError(f"nft {command} failed", got=err.strip()[-400:] or rc)
        return out
