"""What natlab ships inside its package: presets, topologies, scenarios, schemas.

The files live in ``natlab/data/`` and ``natlab/schemas/`` and are installed as
package data, so a wheel or ``pip install natlab`` carries them (the repository's
``behaviours/``, ``topologies/`` and ``scenarios/`` are links to the same folders).
Found with :mod:`importlib.resources`, never from ``__file__`` or ``sys.prefix``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from natlab.errors import ConfigError

__all__ = ["KINDS", "shipped_dir", "shipped_file"]

KINDS = ("behaviours", "topologies", "scenarios", "schemas")
"""The kinds of shipped file, each a folder of the package."""


def shipped_dir(kind: str) -> Path:
    """The installed folder of ``kind`` (natlab runs from a plain install, not a zip)."""
    if kind not in KINDS:
        raise ConfigError("no such kind of shipped file", got=kind, hint="one of " + ", ".join(KINDS))
    root = files("natlab")
    folder = root / kind if kind == "schemas" else root / "data" / kind
    return Path(str(folder))


def shipped_file(kind: str, name: str) -> Path:
    """One shipped file, e.g. ``shipped_file("topologies", "two-homes.yaml")``."""
    path = shipped_dir(kind) / name
    if not path.is_file():
        known = sorted(p.name for p in shipped_dir(kind).glob("*.yaml")) or ["none"]
        raise ConfigError(f"natlab ships no such file in {kind}/", got=name,
                          hint="shipped: " + ", ".join(known))
    return path
