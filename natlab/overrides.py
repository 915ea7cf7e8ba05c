"""``key=value`` knob assignments, as typed on the command line.

``natlab set GW timeouts.udp=30`` and ``natlab explain NAME --set k=v`` turn
their arguments into a nested partial policy dict with :func:`parse_assignments`;
:func:`natlab.presets.apply_overrides` merges and validates it. Values are YAML
scalars (``30``, ``false``, ``null``, ``address-dependent``); an empty value is
null. :func:`flatten` goes the other way, for display.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import yaml

from natlab.errors import ConfigError

__all__ = ["flatten", "parse_assignment", "parse_assignments"]

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
