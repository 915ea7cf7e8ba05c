"""Scenario file -> :class:`Scenario`; every mistake named by file, line and key.

Everything that can be checked without a lab is checked here, so ``natlab
validate`` and ``natlab run`` refuse a bad file before anything is created:
the YAML (safe, located), each step's one action and its keys, expectations,
host and gateway names, ``${var}`` used before a step saved it, knobs given to
``set``/``configure``/``gateways`` (through the preset validator), and the
topology itself (a path relative to the scenario, or inline).
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from pathlib import Path
from typing import Any, Hashable, Optional, Sequence

from pydantic import BaseModel, ValidationError

from natlab.errors import ConfigError
from natlab.scenario.model import (
    ACTIONS, BACKENDS, COMMON_KEYS, EXPECTS, PROBE_ACTIONS, ProbeExpect, ProbeSpec,
    Scenario, ScenarioFile, Step,
)
from natlab.yamlsrc import Doc, dotted

__all__ = ["knob_assignments", "load", "from_doc", "VAR"]

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_-]*)(?:\.(address|port))?\}")
"""``${name}``, ``${name.address}``, ``${name.port}``."""

_NAME_FIELDS = {"src": "host", "host": "host", "gateway": "gateway"}


def load(path: str | Path) -> Scenario:
    from natlab import yamlsrc

    return from_doc(yamlsrc.load(path))


def from_doc(doc: Doc) -> Scenario:
    """Validate a loaded scenario document (see the module docstring)."""
    if not isinstance(doc.data, dict):
        raise doc.error("a scenario is a mapping with topology and steps", got=type(doc.data).__name__)
    top = _validated(ScenarioFile, doc.data, doc, ())
    topo = _topology(top, doc)
    names = {"host": [h.name for h in topo.hosts], "gateway": [g.name for g in topo.gateways]}
    saved: set[str] = set(names["host"] + names["gateway"])  # ${name}: its first address
    steps = tuple(_step(doc, i, raw, names, saved, topo) for i, raw in enumerate(top.steps))
    name = top.name or Path(doc.source).stem
    return Scenario(name=name, file=doc.source, description=top.description.strip(), topology=topo,
                    seed=topo.seed, backends=tuple(top.backends or BACKENDS), steps=steps)


# --- topology ---------------------------------------------------------------------

def _topology(top: ScenarioFile, doc: Doc) -> Any:
    from natlab import yamlsrc
    from natlab.topology.load import _locator, from_data

    if isinstance(top.topology, str):
        base = Path(doc.source).parent if doc.source != "<string>" else Path.cwd()
        path = (base / top.topology).resolve()
        if not path.is_file():
            raise doc.error("topology file not found", ("topology",), got=top.topology,
                            hint=f"a path relative to the scenario ({base})")
        tdoc = yamlsrc.load(path)
        data, file, locate = copy.deepcopy(tdoc.data), str(path), _locator(tdoc.line_of)
    else:
        data, file = copy.deepcopy(top.topology), doc.source
        locate = _locator(lambda p: doc.line_of(("topology", *p)))
    if not isinstance(data, dict):
        raise doc.error("the topology is not a mapping", ("topology",))
    if top.seed is not None:
        data["seed"] = top.seed
    for gw, change in top.gateways.items():
        entry = (data.get("gateways") or {}).get(gw)
        if not isinstance(entry, dict):
            raise doc.error("no such gateway in the topology", ("gateways", gw), got=gw,
                            hint="gateways: " + ", ".join(data.get("gateways") or {}))
        _check_behaviour(doc, ("gateways", gw), change.behaviour or entry.get("behaviour", ""),
                         undot(change.overrides))
        if change.behaviour:
            entry["behaviour"] = change.behaviour
        entry["overrides"] = _merge(undot(entry.get("overrides") or {}), undot(change.overrides))
    return from_data(data, file=file, locate=locate)


def _check_behaviour(doc: Doc, path: tuple, behaviour: str, overrides: dict) -> None:
    from natlab import presets

    try:
        preset = presets.load_preset(behaviour)
    except ConfigError as err:
        raise doc.error(err.what, (*path, "behaviour"), got=err.got, hint=err.hint) from None
    presets.apply_overrides(preset.policy, overrides, doc=doc, path=(*path, "overrides"))


def undot(knobs: dict[str, Any]) -> dict[str, Any]:
    """``{"timeouts.udp": 30}`` -> ``{"timeouts": {"udp": 30}}`` (nested dicts kept)."""
    out: dict[str, Any] = {}
    for key, value in knobs.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = undot(value) if isinstance(value, dict) else value
    return out


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def knob_assignments(knobs: dict[str, Any]) -> list[str]:
    """``{"timeouts": {"udp": 30}}`` -> ``["timeouts.udp=30"]`` for the control socket."""
    from natlab.overrides import flatten

    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in flatten(undot(knobs)).items()]


# --- steps --------------------------------------------------------------------------

def _step(doc: Doc, index: int, raw: Any, names: dict, saved: set[str], topo: Any) -> Step:
    path: tuple[Hashable, ...] = ("steps", index)
    if not isinstance(raw, dict):
        raise doc.error("a step is a mapping with one action", path, got=raw,
                        hint="actions: " + ", ".join(ACTIONS))
    for key in raw:
        if key not in ACTIONS and key not in COMMON_KEYS:
            close = difflib.get_close_matches(str(key), [*ACTIONS, *COMMON_KEYS], n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise doc.error("unknown step key", (*path, key), got=key,
                            hint=hint + "actions: " + ", ".join(ACTIONS) + "; also " + ", ".join(COMMON_KEYS))
    actions = [k for k in raw if k in ACTIONS]
    if len(actions) != 1:
        raise doc.error("a step has exactly one action", path, got=actions or None,
                        hint="actions: " + ", ".join(ACTIONS))
    action = actions[0]
    value = raw[action]
    if action == "reboot" and isinstance(value, str):
        value = {"gateway": value}
    spec = _validated(ACTIONS[action], value, doc, (*path, action))
    expect = None
    if "expect" in raw:
        if action not in EXPECTS:
            raise doc.error(f"'{action}' takes no expect", (*path, "expect"),
                            hint="expect goes with " + ", ".join(EXPECTS))
        expect = _validated(EXPECTS[action], raw["expect"] or {}, doc, (*path, "expect"))
        if action == "wait" and not spec.mappings:
            raise doc.error("expect on wait goes with wait: mappings", (*path, "expect"))
    elif action in EXPECTS:
        expect = EXPECTS[action]()
    save = raw.get("save")
    if save is not None:
        if action not in (*PROBE_ACTIONS, "mappings") or not isinstance(save, str) or not VAR.fullmatch("${%s}" % save):
            raise doc.error("save takes a variable name, on a probe or mappings step", (*path, "save"),
                            got=save, hint="e.g. save: alice_ext, then use ${alice_ext}")
    _check_names(doc, path, action, spec, names)
    _check_vars(doc, path, raw, saved)
    if save:
        saved.add(save)
    if action == "set":
        _check_knobs(doc, (*path, "set", "knobs"), topo, spec.gateway, spec.knobs)
    if action == "configure":
        _check_behaviour(doc, (*path, "configure"), spec.behaviour, undot(spec.overrides))
    if action in PROBE_ACTIONS:
        _check_probe(doc, path, action, spec, expect)
    name = raw.get("name")
    return Step(index=index, line=doc.line_of(path), action=action, spec=spec, expect=expect,
                name=str(name) if name is not None else None, save=save)


def _check_names(doc: Doc, path: tuple, action: str, spec: BaseModel, names: dict) -> None:
    for field, kind in _NAME_FIELDS.items():
        value = getattr(spec, field, None)
        if value is not None and value not in names[kind]:
            key = "from" if field == "src" else field
            raise doc.error(f"no {kind} named '{value}' in the topology", (*path, action, key), got=value,
                            hint=f"{kind}s: " + (", ".join(names[kind]) or "none"))
    inner = getattr(spec, "mappings", None)
    if inner is not None and inner.gateway not in names["gateway"]:
        raise doc.error(f"no gateway named '{inner.gateway}' in the topology",
                        (*path, action, "mappings", "gateway"), got=inner.gateway,
                        hint="gateways: " + ", ".join(names["gateway"]))
    if isinstance(spec, ProbeSpec):
        for key in ("to", "at"):
            text = getattr(spec, key)
            if text is None or text == "nobody" or VAR.search(text):
                continue
            node = text.rsplit(":", 1)[0] if ":" in text else text
            if not _is_ipv4(node) and node not in names["host"] + names["gateway"]:
                raise doc.error(f"'{key}' names no host or gateway", (*path, action, key), got=text,
                                hint="write NAME:PORT or ADDRESS:PORT; names: "
                                     + ", ".join(names["host"] + names["gateway"]))
            if key == "at" and not _is_ipv4(node) and node not in names["host"]:
                raise doc.error("'at' is the receiving host", (*path, action, key), got=text,
                                hint="hosts: " + ", ".join(names["host"]))


def _check_vars(doc: Doc, path: tuple, raw: dict, saved: set[str]) -> None:
    for var in VAR.findall(json.dumps(raw, default=str)):
        if var[0] not in saved:
            raise doc.error(f"${{{var[0]}}} is used before any step saved it", path, got=var[0],
                            hint="add 'save: %s' to an earlier probe or mappings step" % var[0])


def _check_knobs(doc: Doc, path: tuple, topo: Any, gateway: str, knobs: dict) -> None:
    from natlab import presets

    gw = next(g for g in topo.gateways if g.name == gateway)
    policy = presets.resolve(gw.behaviour, overrides=gw.overrides or None).policy
    presets.apply_overrides(policy, undot(knobs), doc=doc, path=path)


def _check_probe(doc: Doc, path: tuple, action: str, spec: ProbeSpec, expect: ProbeExpect) -> None:
    if action == "icmp":
        if ":" in spec.to and not VAR.search(spec.to):
            raise doc.error("an ICMP echo goes to an address, not a port", (*path, action, "to"),
                            got=spec.to, hint="write to: NAME or ADDRESS")
        return
    if ":" not in spec.to and not VAR.fullmatch(spec.to):
        raise doc.error(f"a {action} probe needs a port", (*path, action, "to"), got=spec.to,
                        hint="write NAME:PORT, ADDRESS:PORT or ${var}")
    if expect.refused is not None and action == "udp" and not spec.reply:
        raise doc.error("a UDP sender only learns of a refusal while it waits for an answer",
                        (*path, "expect", "refused"), hint=f"add reply: true to the {action} probe")
    if spec.at == "nobody" and expect.delivered:
        raise doc.error("nobody listens, so nothing can be delivered", (*path, "expect", "delivered"),
                        hint="drop 'at: nobody' or expect delivered: false")


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


# --- pydantic errors as located ConfigErrors ----------------------------------------------

def _validated(model: type[BaseModel], value: Any, doc: Doc, path: tuple) -> Any:
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as exc:
        raise _located(exc, model, doc, path) from None


def _located(exc: ValidationError, model: type[BaseModel], doc: Doc, path: tuple) -> ConfigError:
    errors = exc.errors()
    e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])  # a typo explains the rest
    loc = tuple(p for p in e["loc"] if p != "[key]" and not str(p).startswith(("function-", "literal[", "list[", "int", "str")))
    full = (*path, *loc)
    got: Any = e.get("input")
    hint: Optional[str] = None
    if e["type"] == "extra_forbidden":
        what, got = "unknown key", loc[-1] if loc else got
        known = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(got), known, n=1)
        hint = (f"did you mean '{close[0]}'? " if close else "") + "known keys: " + ", ".join(known)
    elif e["type"] == "missing":
        what, got, hint = "missing key", None, f"add '{loc[-1]}'" if loc else None
    else:
        what = e["msg"].removeprefix("Value error, ")
    if isinstance(got, (dict, list)):
        got = None
    return ConfigError(what, got=got, hint=hint, file=doc.source, line=doc.line_of(full),
                       key=dotted(full) or None)


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part)) or next(
            (f for f in model.model_fields.values() if f.alias == part), None)
        ann = getattr(field, "annotation", None)
        inner = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            break
        model = inner[0]
    return [f.alias or name for name, f in model.model_fields.items()]


# --- natlab validate ----------------------------------------------------------------------

def _is_scenario(data: dict) -> bool:
    return "steps" in data and "topology" in data


def _validate_scenario(doc: Doc) -> str:
    scn = from_doc(doc)
    return (f"{doc.source}: scenario {scn.name!r} is valid ({len(scn.steps)} steps, topology "
            f"{scn.topology.name!r}, seed {scn.seed}, backends {', '.join(scn.backends)})")


def _register() -> None:
    from natlab import validate

    validate.register("scenario", _is_scenario, _validate_scenario)


_register()
