"""``key=value`` knob assignments, as typed on the command line.

``natlab set GW timeouts.udp=30`` and ``natlab explain NAME --set k=v`` turn
their arguments into a nested partial policy dict with :func:`parse_assignments`;
:func:`natlab.behaviours.presets.apply_overrides` merges and validates it. Values are YAML
scalars (``30``, ``false``, ``null``, ``address-dependent``); an empty value is
null. :func:`flatten` goes the other way, for display.

Knobs in YAML (a topology's ``overrides:``, a scenario's ``gateways:``/``set:``/
``configure:``, a preset's ``policy:``) may be nested (``timeouts: {udp: 30}``),
dotted (``timeouts.udp: 30``) or mixed; :func:`undot` makes them nested, refusing
a knob given twice, and :func:`knob_lines` lets errors about the nested spelling
point at the line of the dotted key.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Hashable, Iterable, Iterator, Mapping, Optional, Sequence

import yaml

from natlab.errors import ConfigError, ErrorList
from natlab.yamlsrc import Doc, dotted

__all__ = ["flatten", "knob_lines", "parse_assignment", "parse_assignments", "undot"]

_KEY_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_EXAMPLE = "write KNOB=VALUE, e.g. timeouts.udp=30 or filtering=address-dependent"


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``["timeouts.udp=30", "icmp.echo=false"]`` -> ``{"timeouts": {"udp": 30}, ...}``."""
    result: dict[str, Any] = {}
    for item in items:
        keys, value = parse_assignment(item)
        _store(result, keys, value, item)
    return result


def parse_assignment(item: str) -> tuple[tuple[str, ...], Any]:
    """``"timeouts.udp=30"`` -> ``(("timeouts", "udp"), 30)``."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("not a KNOB=VALUE assignment", got=item, hint=_EXAMPLE)
    parts = tuple(part.replace("-", "_") for part in key.split("."))
    if not all(_KEY_PART.match(part) for part in parts):
        raise ConfigError("bad knob name", got=key, key=key,
                          hint="dotted names of letters, digits and _, e.g. timeouts.udp")
    return parts, _parse_value(text.strip(), key)


def _parse_value(text: str, key: str) -> Any:
    try:
        return yaml.safe_load(text) if text else None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "not a YAML value"
        raise ConfigError(f"bad value: {problem}", got=text, key=key,
                          hint="quote it, e.g. key='text'") from None


def _store(result: dict[str, Any], keys: tuple[str, ...], value: Any, item: str) -> None:
    node = result
    for depth, part in enumerate(keys[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(keys[: depth + 1])
            raise ConfigError("conflicting assignments", got=item, key=prefix,
                              hint=f"{prefix} is already set to a value")
        node = child
    last = keys[-1]
    if isinstance(node.get(last), dict) and node[last] and not isinstance(value, dict):
        raise ConfigError("conflicting assignments", got=item, key=".".join(keys),
                          hint="this section already has knobs set")
    node[last] = value


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"timeouts": {"udp": 30}}`` -> ``{"timeouts.udp": 30}`` (lists kept whole)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


# --- knobs in YAML: nested, dotted or mixed ----------------------------------------

_Parts = tuple[str, ...]
_Raw = tuple[Hashable, ...]


def undot(knobs: Mapping[str, Any], *, doc: Optional[Doc] = None,
          path: Sequence[Hashable] = ()) -> dict[str, Any]:
    """``{"timeouts.udp": 30, "icmp": {"echo": False}}`` -> nested dict.

    A knob given twice (``timeouts.udp`` and ``timeouts: {udp}``, or a section
    and a knob inside it) is a ConfigError naming both spellings; ``doc`` and
    ``path`` (where ``knobs`` sits in ``doc``) locate it.
    """
    result: dict[str, Any] = {}
    origin: dict[_Parts, _Raw] = {}  # nested key path -> the raw key path that set it
    errors = ErrorList()
    for parts, raw, value in _leaves(knobs):
        with errors.catch():
            _place(result, origin, parts, raw, value, doc, tuple(path))
    errors.raise_if_any()
    return result


def knob_lines(knobs: Mapping[str, Any], doc: Optional[Doc],
               path: Sequence[Hashable] = ()) -> Optional[Doc]:
    """``doc`` that also knows the line of each knob under its nested spelling."""
    if doc is None or not isinstance(knobs, Mapping):
        return doc
    aliases: dict[_Raw, int] = {}
    for parts, raw, _ in _leaves(knobs):
        line = doc.line_of((*path, *raw))
        for end in range(1, len(parts) + 1):
            nested = (*path, *parts[:end])
            if line is not None and nested not in doc.key_lines:
                aliases.setdefault(nested, line)
    if not aliases:
        return doc
    return dataclasses.replace(doc, key_lines={**doc.key_lines, **aliases})


def _leaves(knobs: Mapping[Any, Any], raw: _Raw = (),
            parts: _Parts = ()) -> Iterator[tuple[_Parts, _Raw, Any]]:
    for key, value in knobs.items():
        here_raw, here = (*raw, key), (*parts, *str(key).split("."))
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, here_raw, here)
        else:
            yield here, here_raw, value


def _place(result: dict[str, Any], origin: dict[_Parts, _Raw], parts: _Parts, raw: _Raw,
           value: Any, doc: Optional[Doc], path: _Raw) -> None:
    node = result
    for end in range(1, len(parts)):
        part = parts[end - 1]
        if part not in node:
            node[part], origin[parts[:end]] = {}, raw
        elif not isinstance(node[part], dict):
            raise _given_twice(parts[:end], raw, origin[parts[:end]], doc, path)
        node = node[part]
    last = parts[-1]
    if last in node:
        if isinstance(value, Mapping) and isinstance(node[last], dict):
            return  # an empty section next to knobs inside it adds nothing
        raise _given_twice(parts, raw, origin[parts], doc, path)
    node[last], origin[parts] = (dict(value) if isinstance(value, Mapping) else value), raw


def _given_twice(knob: _Parts, raw: _Raw, other: _Raw, doc: Optional[Doc],
                 path: _Raw) -> ConfigError:
    where = doc.line_of((*path, *other)) if doc is not None else None
    hint = (f"also given as '{_spelling(other)}'" + (f" on line {where}" if where else "")
            + "; keep one spelling")
    what = f"knob {'.'.join(knob)!r} given twice"
    if doc is not None:
        return doc.error(what, (*path, *raw), got=_spelling(raw), hint=hint)
    return ConfigError(what, got=_spelling(raw), hint=hint, key=dotted((*path, *raw)) or None)


def _spelling(raw: _Raw) -> str:
    """``("timeouts", "udp")`` -> ``"timeouts: {udp}"``; ``("timeouts.udp",)`` as is."""
    text = str(raw[-1])
    for key in reversed(raw[:-1]):
        text = f"{key}: {{{text}}}"
    return text
