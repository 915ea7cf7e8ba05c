"""Checks on what control requests carry: preset names and files, pools."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Sequence

PRESET_SUFFIXES = (".yaml", ".yml")


def allowed_preset(behaviour: str, dirs: Sequence[str]) -> None:
    """A preset name, or a preset file inside one of ``dirs`` (the lab's behaviour folders).

    ``configure`` must not become a way to make the gateway open any file it is
    given: a path is followed through symlinks and ``..`` before it is checked.
    """
    if "/" not in behaviour and os.sep not in behaviour and not behaviour.endswith(PRESET_SUFFIXES):
        if behaviour.strip() != behaviour or "\0" in behaviour:
            raise ValueError(f"not a preset name: {behaviour!r}")
        return
    if "\0" in behaviour or not os.path.isabs(behaviour):
        raise ValueError(f"a preset file must be an absolute path, got {behaviour!r}")
    real = Path(os.path.realpath(behaviour))
    roots = [Path(os.path.realpath(d)) for d in dirs if d]
    if real.suffix not in PRESET_SUFFIXES or not any(real.is_relative_to(root) for root in roots):
        where = ", ".join(str(r) for r in roots) or "none: this lab was started with preset names only"
        raise ValueError(f"preset file {behaviour} is outside the lab's behaviour folders ({where})"
                         "; name a preset or a .yaml file in one of them")


def validate_pool(pool: Any) -> tuple[str, ...]:
    if not isinstance(pool, list) or not pool:
        raise ValueError('"pool" must be a non-empty list of IPv4 addresses')
    out = []
    for item in pool:
        try:
            out.append(str(ipaddress.IPv4Address(item)))
        except (ipaddress.AddressValueError, TypeError) as err:
            raise ValueError(f"not an IPv4 address in the pool: {item!r}") from err
    if len(set(out)) != len(out):
        raise ValueError(f"the pool lists an address twice: {pool!r}")
    return tuple(out)
