"""Where a lab's ``configure`` may load preset files from (every tier uses the same folders)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def behaviour_dirs(topo: Any) -> tuple[str, ...]:
    """Where ``configure`` may load preset files from: the folders the lab was started with."""
    from natlab.topology.load import looks_like_path

    dirs = [p for p in os.environ.get("NATLAB_BEHAVIOURS", "").split(os.pathsep) if p]
    if topo.file:
        dirs.append(str(Path(topo.file).parent))
    dirs += [str(Path(g.behaviour).parent) for g in topo.gateways if looks_like_path(g.behaviour)]
    return tuple(dict.fromkeys(os.path.realpath(d) for d in dirs))
