"""Validate any natlab YAML file: detect its kind, dispatch to a validator.

A tiny registry: each document kind registers ``detect(data) -> bool`` (a
cheap look at the top-level mapping) and ``validate(doc) -> str`` (returns a
one-line description, or raises every error it found at once: a
:class:`~natlab.errors.ConfigError`, or for several a
:class:`~natlab.errors.ConfigErrors` sorted by line). Kinds
are tried in registration order; the first whose detect says yes wins.

This module registers ``behaviour`` (a preset file). Other kinds register from
their own module with :func:`register`, and add an import of that module to
:func:`_load_builtin_kinds` so ``natlab validate`` knows them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from natlab.yamlsrc import Doc, load

__all__ = ["Kind", "detect_kind", "kinds", "register", "validate_doc", "validate_file"]

# Modules that register a kind when imported (besides this one).
_BUILTIN_MODULES: tuple[str, ...] = ("natlab.scenario.load", "natlab.topology.load")


@dataclass(frozen=True)
class Kind:
    """A document kind natlab can validate."""

    name: str
    detect: Callable[[dict], bool]
    validate: Callable[[Doc], str]


_KINDS: dict[str, Kind] = {}


def register(kind: str, detect: Callable[[dict], bool], validate: Callable[[Doc], str]) -> None:
    """Register (or replace) a document kind."""
    _KINDS[kind] = Kind(kind, detect, validate)


def kinds() -> list[str]:
    """Names of the registered kinds, in detection order."""
    _load_builtin_kinds()
    return list(_KINDS)


def _load_builtin_kinds() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def detect_kind(doc: Doc) -> Kind:
    """The first registered kind whose detector accepts the document."""
    _load_builtin_kinds()
    if not isinstance(doc.data, dict):
        raise doc.error("not a natlab document: expected a mapping at the top",
                        got=type(doc.data).__name__)
    for kind in _KINDS.values():
        if kind.detect(doc.data):
            return kind
    raise doc.error("cannot tell what kind of natlab file this is",
                    hint="known kinds: " + ", ".join(_KINDS))


def validate_doc(doc: Doc) -> str:
    """Validate a loaded document; returns a one-line success description."""
    return detect_kind(doc).validate(doc)


def validate_file(path: str | Path) -> str:
    """Validate a YAML file; returns a one-line description, raises ConfigError(s)."""
    return validate_doc(load(path))


def _is_behaviour(data: dict[str, Any]) -> bool:
    return "policy" in data


def _validate_behaviour(doc: Doc) -> str:
    from natlab.behaviours.presets import preset_from_doc  # lazy: presets imports pydantic models

    preset = preset_from_doc(doc)
    p = preset.policy
    parent = f", extends {preset.extends}" if preset.extends else ""
    return (f"{doc.source}: behaviour {preset.name!r} is valid ({p.mapping.value} mapping, "
            f"{p.filtering.value} filtering{parent})")


register("behaviour", _is_behaviour, _validate_behaviour)
