"""Every knob of a policy as a row the gateway panel shows and edits.

A row is the dotted knob name, its value as ``natlab set`` takes it, the RFC
requirement (the text ``natlab explain`` prints), the RFC default, and what
values are allowed, read off the policy's JSON Schema: an enum gives a choice,
a boolean true/false, a number its bounds, ``null`` where the knob is optional.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from natlab.explore import backend

__all__ = ["allowed", "knob_rows"]


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return backend.knob_schema()


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    return backend.flatten(backend.policy_to_dict(backend.default_policy()))


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref:
        return _schema()["$defs"][ref.rsplit("/", 1)[1]]
    return node


def _node(knob: str) -> dict[str, Any]:
    node: dict[str, Any] = _schema()
    for part in knob.split("."):
        node = _deref(node)
        props = node.get("properties")
        if props is None:
            for choice in node.get("anyOf", ()):
                props = _deref(choice).get("properties")
                if props:
                    break
        if not props or part not in props:
            return {}
        node = props[part]
    return node


def allowed(knob: str) -> dict[str, Any]:
    """``{"choices": [...]}`` for a closed set (enums, booleans), else ``{"text": "..."}`` describing it."""
    node = _node(knob)
    options = [_deref(c) for c in node.get("anyOf", [node])]
    nullable = any(o.get("type") == "null" for o in options)
    choices: list[str] = []
    words: list[str] = []
    for o in options:
        o = _deref(o)
        if "enum" in o:
            choices += [str(v) for v in o["enum"]]
        elif o.get("type") == "boolean":
            choices += ["true", "false"]
        elif o.get("type") in ("number", "integer"):
            words.append(_bounds(o))
        elif o.get("type") == "array":
            words.append("a list (YAML)")
        elif o.get("type") == "object" or "properties" in o:
            words.append("a mapping (YAML), e.g. {" + ", ".join(f"{k}: ..." for k in o.get("properties", {})) + "}")
    if choices and not words:
        return {"choices": choices + (["null"] if nullable else [])}
    text = " or ".join([*words, *choices] + (["null"] if nullable else []))
    return {"text": text or "any YAML value"}


def _bounds(o: dict[str, Any]) -> str:
    kind = "integer" if o.get("type") == "integer" else "number"
    parts = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in o:
            parts.append(f"{sign} {o[key]:g}")
    unit = " s" if o.get("description") == "seconds" else ""
    return f"{kind}{unit} " + " and ".join(parts) if parts else kind + unit


def knob_rows(policy: Any) -> list[dict[str, Any]]:
    """One row per knob of ``policy``: knob, value, default, requirement and what is allowed."""
    rows = []
    defaults = _defaults()
    for knob, value in backend.flatten(backend.policy_to_dict(policy)).items():
        rows.append({
            "knob": knob, "value": backend.show_value(value),
            "default": backend.show_value(defaults.get(knob)),
            "requirement": backend.requirement_of(knob), **allowed(knob),
        })
    return rows
