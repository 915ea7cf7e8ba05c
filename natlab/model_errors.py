"""Helpers shared by the loaders that turn pydantic's error lists into ConfigErrors."""

from __future__ import annotations

import difflib
from ipaddress import IPv4Network
from typing import Any, Optional, Sequence

__all__ = ["address_error", "close_names", "did_you_mean", "without_explained_missing"]


def close_names(name: Any, known: Sequence[str]) -> list[str]:
    """Known names that look like ``name`` (a typo's likely meaning), best first."""
    return difflib.get_close_matches(str(name), [str(k) for k in known], n=1)


def did_you_mean(name: Any, known: Sequence[str]) -> str:
    """``"did you mean 'x'? "`` when a known name is close to ``name``, else ``""``."""
    close = close_names(name, known)
    return f"did you mean {close[0]!r}? " if close else ""


def without_explained_missing(errors: list[dict]) -> list[dict]:
    """Drop "missing key X" where an unknown key beside it is a typo of X.

    A misspelt required key shows up twice in pydantic (unknown and missing);
    the unknown key's "did you mean" already says everything.
    """
    typos: dict[tuple, list[str]] = {}
    for e in errors:
        if e["type"] in ("extra_forbidden", "unexpected_keyword_argument") and e["loc"]:
            typos.setdefault(tuple(e["loc"][:-1]), []).append(str(e["loc"][-1]))
    kept = []
    for e in errors:
        loc = tuple(e["loc"])
        if e["type"] == "missing" and loc and any(
                close_names(typo, [str(loc[-1])]) for typo in typos.get(loc[:-1], ())):
            continue
        kept.append(e)
    return kept


_IP_TYPES = {"ip_v4_address": "IPv4 address", "ip_v4_network": "IPv4 subnet",
             "ip_v4_interface": "IPv4 address"}


def address_error(kind: str, value: Any) -> Optional[tuple[str, str]]:
    """(what, hint) for pydantic's "not a valid IPv4 ..." errors; None for other kinds.

    The hint says what exactly is wrong (``Octet 999 (> 255) not permitted``,
    ``has host bits set``), as :mod:`ipaddress` words it.
    """
    noun = _IP_TYPES.get(kind)
    if noun is None:
        return None
    reason = ""
    if isinstance(value, str):
        try:
            IPv4Network(value)
        except ValueError as err:
            reason = f"{err}; "
    if kind != "ip_v4_network":
        return f"invalid {noun}", f"{reason}write four numbers 0-255, e.g. 192.168.1.10"
    if "host bits set" in reason:
        network = IPv4Network(value, strict=False)
        return f"invalid {noun}", f"{reason}did you mean '{network}'?"
    return f"invalid {noun}", f"{reason}write ADDRESS/PREFIX with a prefix 0-32, e.g. 192.168.1.0/24"
