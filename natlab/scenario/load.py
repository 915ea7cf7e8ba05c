"""Scenario file -> :class:`Scenario`; every mistake named by file, line and key.

Everything that can be checked without a lab is checked here, so ``natlab
validate`` and ``natlab run`` refuse a bad file before anything is created:
the YAML (safe, located), each step's one action and its keys, expectations,
host and gateway names, ``${var}`` used before a step saved it, knobs given to
``set``/``configure``/``gateways`` (through the preset validator, nested or
dotted; their ``static``/``forwards`` addresses against the gateway's pool and
subnets, as are ``set_pool`` addresses), endpoint addresses and ports in steps
(:mod:`natlab.scenario.endpoints`), and the topology itself (a path relative to
the scenario, or inline).

Checks are independent where they can be: every error found is raised at once
(:class:`~natlab.errors.ConfigErrors`, sorted by file and line). A broken step
does not hide the next one; a broken topology still lends its host and gateway
names to the step checks.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any, Hashable, Optional, Sequence

from pydantic import BaseModel, ValidationError

from natlab.engine.policy import Policy
from natlab.words import plural
from natlab.errors import ConfigError, ErrorList, combined, errors_of
from natlab.model_errors import address_error, did_you_mean, without_explained_missing
from natlab.behaviours.overrides import undot
from natlab.topology.conflicts import (
    Surroundings, policy_problems, pool_problems, raw_surroundings, surroundings,
)
from natlab.scenario.endpoints import endpoint_errors, looks_like_address
from natlab.scenario.model import (
    ACTIONS, BACKENDS, COMMON_KEYS, EXPECTS, PROBE_ACTIONS, ProbeExpect, ProbeSpec,
    Scenario, ScenarioFile, Step,
)
from natlab.yamlsrc import Doc, dotted

__all__ = ["knob_assignments", "load", "from_doc", "undot", "VAR"]

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_-]*)(?:\.(address|port))?\}")
"""``${name}``, ``${name.address}``, ``${name.port}``."""

_NAME_FIELDS = {"src": "host", "host": "host", "gateway": "gateway", "third_party": "host"}
Names = Optional[dict[str, list[str]]]
"""{"host": [...], "gateway": [...]}; None when the topology could not be read at all."""


def load(path: str | Path) -> Scenario:
    from natlab import yamlsrc

    return from_doc(yamlsrc.load(path))


def from_doc(doc: Doc) -> Scenario:
    """Validate a loaded scenario document (see the module docstring)."""
    if not isinstance(doc.data, dict):
        raise doc.error("a scenario is a mapping with topology and steps", got=type(doc.data).__name__)
    errors = ErrorList()
    top = _top(doc, errors)
    if top is None:
        errors.raise_if_any()
    topo, names = _topology(top, doc, errors)
    saved: set[str] = set(names["host"] + names["gateway"]) if names else set()  # ${name}: its address
    steps = tuple(_step(doc, i, raw, names, saved, topo, errors) for i, raw in enumerate(top.steps))
    errors.raise_if_any()
    name = top.name or Path(doc.source).stem
    return Scenario(name=name, file=doc.source, description=top.description.strip(), topology=topo,
                    seed=topo.seed, backends=tuple(top.backends or BACKENDS), steps=steps)


def _top(doc: Doc, errors: ErrorList) -> Optional[ScenarioFile]:
    """The top level; bad optional keys are reported and left out, so the steps still get checked."""
    data = dict(doc.data)
    for _ in range(2):
        try:
            return ScenarioFile.model_validate(data)
        except ValidationError as exc:
            errors.add(_located(exc, ScenarioFile, doc, ()))
            heads = {e["loc"][0] for e in exc.errors() if e["loc"]}
            if heads & {"topology", "steps"} or not heads:
                return None
            for head in heads:
                data.pop(head, None)
    return None


# --- topology ---------------------------------------------------------------------

def _topology(top: ScenarioFile, doc: Doc, errors: ErrorList) -> tuple[Any, Names]:
    """(the Topology or None if it is wrong, the host and gateway names it has)."""
    from natlab.topology.load import from_data

    try:
        data, tdoc, prefix = _topology_source(top, doc)
    except ConfigError as err:
        errors.add(err)
        return None, None
    sections = {kind: data.get(kind + "s") for kind in ("host", "gateway")}
    names = {kind: list(v) if isinstance(v, dict) else [] for kind, v in sections.items()}
    if top.seed is not None:
        data["seed"] = top.seed
    for gw, change in top.gateways.items():
        with errors.catch():
            _change_gateway(doc, data, gw, change, names["gateway"])
    try:
        return from_data(data, file=tdoc.source, doc=tdoc, prefix=prefix), names
    except ConfigError as err:
        for one in errors_of(err):
            errors.add(_from_change(one, top, doc, tdoc, prefix))
    return None, names


_KEY_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def _from_change(err: ConfigError, top: ScenarioFile, doc: Doc, tdoc: Doc,
                 prefix: tuple) -> ConfigError:
    """A topology error about a knob the scenario's ``gateways:`` set, moved to that line."""
    head = dotted((*prefix, "gateways"))
    for gw, change in top.gateways.items():
        own = f"{head}.{gw}.overrides."
        if err.file != tdoc.source or not (err.key or "").startswith(own):
            continue
        rest = tuple(int(i) if i else name for i, name in _KEY_PART.findall(err.key[len(own):]))
        if rest and rest[0] in _knobs(change.overrides):
            return doc.error(err.what, ("gateways", gw, "overrides", *rest), got=err.got,
                             hint=err.hint)
    return err


def _topology_source(top: ScenarioFile, doc: Doc) -> tuple[dict, Doc, tuple]:
    """The topology's data (a copy), the Doc its lines are in, and its path in that Doc."""
    from natlab import yamlsrc

    if isinstance(top.topology, str):
        base = Path(doc.source).parent if doc.source != "<string>" else Path.cwd()
        path = (base / top.topology).resolve()
        if not path.is_file():
            raise doc.error("topology file not found", ("topology",), got=top.topology,
                            hint=f"a path relative to the scenario ({base})")
        tdoc, prefix = yamlsrc.load(path), ()
        data = tdoc.data
    else:
        tdoc, prefix, data = doc, ("topology",), top.topology
    if not isinstance(data, dict):
        raise doc.error("the topology is not a mapping", ("topology",))
    return copy.deepcopy(data), tdoc, prefix


def _change_gateway(doc: Doc, data: dict, gw: str, change: Any, known: list[str]) -> None:
    """Apply a scenario's ``gateways: GW: {...}`` to the topology data, once it checks out."""
    entry = (data.get("gateways") or {}).get(gw)
    if not isinstance(entry, dict):
        raise doc.error("no such gateway in the topology", ("gateways", gw), got=gw,
                        hint=did_you_mean(gw, known) + "gateways: " + (", ".join(known) or "none"))
    _check_behaviour(doc, ("gateways", gw), change.behaviour or entry.get("behaviour", ""),
                     change.overrides, raw_surroundings(data, gw),
                     preset_is_new=bool(change.behaviour))
    if change.behaviour:
        entry["behaviour"] = change.behaviour
    if change.overrides:
        try:
            mine = undot(entry.get("overrides") or {})
        except ConfigError:
            return  # the topology's own overrides are wrong; its check reports them
        entry["overrides"] = _merge(mine, undot(change.overrides))


def _check_behaviour(doc: Doc, path: tuple, behaviour: str, overrides: dict,
                     around: Optional[Surroundings] = None,
                     preset_is_new: bool = True) -> None:
    """The preset exists and the overrides fit it (checked against defaults if it does not).

    With ``around`` (the gateway's pool and subnets) the address knobs are checked
    against them too; those the preset sets are reported at ``behaviour`` if the
    step names it (``preset_is_new``; else the topology's own check reports them).
    """
    from natlab.behaviours import presets
    around = around or Surroundings(pool=(), inside=None, outside=None)
    errors = ErrorList()
    policy = Policy()
    try:
        policy = presets.load_preset(behaviour).policy
    except ConfigError as err:
        errors.add(doc.error(err.what, (*path, "behaviour"), got=err.got, hint=err.hint))
    with errors.catch():
        presets.apply_overrides(policy, overrides, doc=doc, path=(*path, "overrides"), **around)
    given = _knobs(overrides)
    for problem in policy_problems(policy, **around) if preset_is_new else ():
        if problem.path[0] not in given:
            errors.add(doc.error(problem.what, (*path, "behaviour"), got=problem.got,
                                 hint=problem.from_preset(behaviour).hint))
    errors.raise_if_any()


def _knobs(overrides: Any) -> set[str]:
    """The top-level knobs a (nested or dotted) overrides mapping sets."""
    return {str(k).split(".")[0] for k in overrides} if isinstance(overrides, dict) else set()


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def knob_assignments(knobs: dict[str, Any]) -> list[str]:
    """``{"timeouts": {"udp": 30}}`` -> ``["timeouts.udp=30"]`` for the control socket."""
    from natlab.behaviours.overrides import flatten

    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in flatten(undot(knobs)).items()]


# --- steps --------------------------------------------------------------------------

def _step(doc: Doc, index: int, raw: Any, names: Names, saved: set[str], topo: Any,
          errors: ErrorList) -> Optional[Step]:
    """One step, or None if it is wrong; each independent mistake is added to ``errors``."""
    path: tuple[Hashable, ...] = ("steps", index)
    if not isinstance(raw, dict):
        errors.add(doc.error("a step is a mapping with one action", path, got=raw,
                             hint="actions: " + ", ".join(ACTIONS)))
        return None
    _check_vars(doc, path, raw, saved, errors)
    save = _save(doc, path, raw, errors)
    if save:
        saved.add(save)
        if "map_port" in raw:  # a PCP mapping's nonce, to refresh or delete it later
            saved.add(f"{save}_nonce")
    action = _action(doc, path, raw, errors)
    if action is None:
        return None
    value = raw[action]
    if action == "reboot" and isinstance(value, str):
        value = {"gateway": value}
    spec = expect = None
    with errors.catch():
        spec = _validated(ACTIONS[action], value, doc, (*path, action))
    with errors.catch():
        expect = _expect(doc, path, action, raw, spec)
    if spec is None:
        return None
    _check_names(doc, path, action, spec, names, errors)
    for err in endpoint_errors(doc, path, action, spec, expect):
        errors.add(err)
    with errors.catch():
        if action == "set":
            _check_knobs(doc, (*path, "set", "knobs"), topo, spec.gateway, spec.knobs)
        if action == "configure":
            _check_behaviour(doc, (*path, "configure"), spec.behaviour, spec.overrides,
                             _around(topo, spec.gateway))
        if action == "set_pool":
            _check_pool(doc, (*path, "set_pool", "addresses"), topo, spec.gateway, spec.addresses)
        if action == "punch":
            _check_punch(doc, (*path, "punch"), spec, names)
        if action == "advance" and not math.isfinite(spec.seconds):  # .inf, .nan: never a clock
            raise doc.error("advance takes a finite number of seconds", (*path, "advance", "seconds"),
                            got=spec.seconds, hint="e.g. seconds: 400")
    if action in PROBE_ACTIONS and expect is not None:
        _check_probe(doc, path, action, spec, expect, errors)
    name = raw.get("name")
    return Step(index=index, line=doc.line_of(path), action=action, spec=spec, expect=expect,
                name=str(name) if name is not None else None, save=save)


def _action(doc: Doc, path: tuple, raw: dict, errors: ErrorList) -> Optional[str]:
    """The step's one action; unknown keys (with a "did you mean") are added to ``errors``."""
    unknown = [k for k in raw if k not in ACTIONS and k not in COMMON_KEYS]
    for key in unknown:
        errors.add(doc.error("unknown step key", (*path, key), got=key,
                             hint=did_you_mean(key, [*ACTIONS, *COMMON_KEYS]) + "actions: "
                             + ", ".join(ACTIONS) + "; also " + ", ".join(COMMON_KEYS)))
    actions = [k for k in raw if k in ACTIONS]
    if len(actions) == 1:
        return actions[0]
    if actions or not unknown:  # no action and a typo: the typo says it all
        errors.add(doc.error("a step has exactly one action", path, got=actions or None,
                             hint="actions: " + ", ".join(ACTIONS)))
    return None


def _expect(doc: Doc, path: tuple, action: str, raw: dict, spec: Any) -> Any:
    if "expect" not in raw:
        return EXPECTS[action]() if action in EXPECTS else None
    if action not in EXPECTS:
        raise doc.error(f"'{action}' takes no expect", (*path, "expect"),
                        hint="expect goes with " + ", ".join(EXPECTS))
    expect = _validated(EXPECTS[action], raw["expect"] or {}, doc, (*path, "expect"))
    if action == "wait" and spec is not None and not spec.mappings:
        raise doc.error("expect on wait goes with wait: mappings", (*path, "expect"))
    return expect


def _save(doc: Doc, path: tuple, raw: dict, errors: ErrorList) -> Optional[str]:
    save = raw.get("save")
    if save is None:
        return None
    action = next((k for k in raw if k in ACTIONS), None)
    if action not in (*PROBE_ACTIONS, "mappings", "map_port") or not isinstance(save, str) \
            or not VAR.fullmatch("${%s}" % save):
        errors.add(doc.error("save takes a variable name, on a probe, mappings or map_port step",
                             (*path, "save"), got=save,
                             hint="e.g. save: alice_ext, then use ${alice_ext}"))
        return save if isinstance(save, str) else None  # still known to later steps
    return save


def _no_such(doc: Doc, kind: str, value: str, known: list[str], path: tuple) -> ConfigError:
    return doc.error(f"no {kind} named '{value}' in the topology", path, got=value,
                     hint=did_you_mean(value, known) + f"{kind}s: " + (", ".join(known) or "none"))


def _check_names(doc: Doc, path: tuple, action: str, spec: BaseModel, names: Names,
                 errors: ErrorList) -> None:
    if names is None:
        return  # the topology could not be read; that error is reported already
    for field, kind in _NAME_FIELDS.items():
        value = getattr(spec, field, None)
        if value is not None and value not in names[kind]:
            key = "from" if field == "src" else field
            errors.add(_no_such(doc, kind, value, names[kind], (*path, action, key)))
    inner = getattr(spec, "mappings", None)
    if inner is not None and inner.gateway not in names["gateway"]:
        errors.add(_no_such(doc, "gateway", inner.gateway, names["gateway"],
                            (*path, action, "mappings", "gateway")))
    if isinstance(spec, ProbeSpec):
        everyone = names["host"] + names["gateway"]
        for key in ("to", "at"):
            text = getattr(spec, key)
            if text is None or text == "nobody" or VAR.search(text):
                continue
            node = text.rsplit(":", 1)[0] if ":" in text else text
            if looks_like_address(node):
                continue  # an address, checked by endpoint_errors
            if node not in everyone:
                errors.add(doc.error(f"'{key}' names no host or gateway", (*path, action, key),
                                     got=text, hint=did_you_mean(node, everyone)
                                     + "write NAME:PORT or ADDRESS:PORT; names: " + ", ".join(everyone)))
            elif key == "at" and node not in names["host"]:
                errors.add(doc.error("'at' is the receiving host", (*path, action, key), got=text,
                                     hint="hosts: " + ", ".join(names["host"])))


def _check_punch(doc: Doc, path: tuple, spec: Any, names: Names) -> None:
    from natlab.scenario.punch import spec_problems

    errors = ErrorList()
    for what, key, got, hint in spec_problems(spec, names["host"] if names is not None else None):
        errors.add(doc.error(what, (*path, *key), got=got, hint=hint))
    errors.raise_if_any()


def _check_vars(doc: Doc, path: tuple, raw: dict, saved: set[str], errors: ErrorList) -> None:
    for var in dict.fromkeys(v[0] for v in VAR.findall(json.dumps(raw, default=str))):
        if var not in saved:
            errors.add(doc.error(f"${{{var}}} is used before any step saved it", path, got=var,
                                 hint=did_you_mean(var, sorted(saved))
                                 + "add 'save: %s' to an earlier probe or mappings step" % var))


def _around(topo: Any, gateway: str) -> Optional[Surroundings]:
    """The gateway's pool and subnets; None if the topology is broken or has no such gateway."""
    if topo is None or not any(g.name == gateway for g in topo.gateways):
        return None
    return surroundings(topo, gateway)


def _policy_of(topo: Any, gateway: str) -> Policy:
    gw = next((g for g in topo.gateways if g.name == gateway), None) if topo else None
    # An unknown gateway or a broken topology is reported elsewhere; knob names still get checked.
    return gw.policy if gw is not None and gw.policy is not None else Policy()


def _check_knobs(doc: Doc, path: tuple, topo: Any, gateway: str, knobs: dict) -> None:
    from natlab.behaviours import presets
    around = _around(topo, gateway) or {}
    presets.apply_overrides(_policy_of(topo, gateway), knobs, doc=doc, path=path, **around)


def _check_pool(doc: Doc, path: tuple, topo: Any, gateway: str, pool: list) -> None:
    """A new pool lies on the outside network, and takes no address the gateway's policy claims.

    (Against the policy the topology starts with; a ``set`` step before may have changed it.)
    """
    around = _around(topo, gateway)
    if around is None:
        return
    policy = _policy_of(topo, gateway)
    before = policy_problems(policy, **around)
    errors = ErrorList()
    for problem in pool_problems(pool, around["outside"]):
        errors.add(doc.error(problem.what, (*path, problem.path[1]), got=problem.got,
                             hint=problem.hint))
    for problem in policy_problems(policy, pool, around["inside"], around["outside"]):
        if problem not in before:
            errors.add(doc.error(f"new pool clashes with {problem.key}: {problem.what}",
                                 path, got=problem.got, hint=problem.hint))
    errors.raise_if_any()


def _check_probe(doc: Doc, path: tuple, action: str, spec: ProbeSpec, expect: ProbeExpect,
                 errors: ErrorList) -> None:
    if spec.keep_open and action != "tcp":
        errors.add(doc.error("keep_open is for TCP connections", (*path, action, "keep_open"),
                             got=action, hint="drop keep_open, or make the probe tcp"))
    if expect.refused is not None and action in ("udp", "gre") and not spec.reply:
        errors.add(doc.error(f"a {action.upper()} sender only learns of a refusal while it waits for an answer",
                             (*path, "expect", "refused"), hint=f"add reply: true to the {action} probe"))
    if action in ("icmp", "gre"):
        if ":" in spec.to and not VAR.search(spec.to):
            what = "an ICMP echo" if action == "icmp" else "a GRE packet"
            errors.add(doc.error(f"{what} goes to an address, not a port", (*path, action, "to"),
                                 got=spec.to, hint="write to: NAME or ADDRESS"))
        return
    if ":" not in spec.to and not VAR.fullmatch(spec.to):
        errors.add(doc.error(f"a {action} probe needs a port", (*path, action, "to"), got=spec.to,
                             hint="write NAME:PORT, ADDRESS:PORT or ${var}"))
    if spec.at == "nobody" and expect.delivered:
        errors.add(doc.error("nobody listens, so nothing can be delivered",
                             (*path, "expect", "delivered"),
                             hint="drop 'at: nobody' or expect delivered: false"))


# --- pydantic errors as located ConfigErrors ----------------------------------------------

def _validated(model: type[BaseModel], value: Any, doc: Doc, path: tuple) -> Any:
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as exc:
        raise _located(exc, model, doc, path) from None


def _located(exc: ValidationError, model: type[BaseModel], doc: Doc, path: tuple) -> ConfigError:
    """Every pydantic error as a located ConfigError (a typo's "missing key" left out)."""
    return combined(_one(e, model, doc, path) for e in without_explained_missing(exc.errors()))


_TAGS = ("function-", "literal[", "list[", "int", "str")


def _one(e: dict, model: type[BaseModel], doc: Doc, path: tuple) -> ConfigError:
    loc = tuple(p for p in e["loc"] if p != "[key]" and not str(p).startswith(_TAGS))
    full = (*path, *loc)
    got: Any = e.get("input")
    hint: Optional[str] = None
    if e["type"] == "extra_forbidden":
        what, got = "unknown key", loc[-1] if loc else got
        known = _fields_at(model, loc[:-1])
        hint = did_you_mean(got, known) + "known keys: " + ", ".join(known)
    elif e["type"] == "missing":
        what, got, hint = "missing key", None, f"add '{loc[-1]}'" if loc else None
    elif address_error(e["type"], got):
        what, hint = address_error(e["type"], got)
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
    return (f"{doc.source}: scenario {scn.name!r} is valid ({plural(len(scn.steps), 'step')}, topology "
            f"{scn.topology.name!r}, seed {scn.seed}, backends {', '.join(scn.backends)})")


def _register() -> None:
    from natlab import validate

    validate.register("scenario", _is_scenario, _validate_scenario)


_register()
