"""Helpers shared by the loaders that turn pydantic's error lists into ConfigErrors."""

from __future__ import annotations

import difflib
from typing import Any, Sequence

__all__ = ["close_names", "did_you_mean", "without_explained_missing"]


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
