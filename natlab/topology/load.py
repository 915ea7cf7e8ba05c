"""Topology file -> :class:`Topology`, every error naming file, line and key.

YAML is read by :mod:`natlab.yamlsrc` (safe loading, a line for every key),
validated by the strict models in :mod:`natlab.topology.model`, checked and
completed by :func:`natlab.topology.addressing.build`; finally each gateway's
behaviour is resolved once through :mod:`natlab.behaviours.presets` so that an unknown
preset or a bad override fails here, before anything is created. The address
knobs of each policy (``static``, ``forwards``) are checked against the
gateway's pool and subnets (:mod:`natlab.topology.conflicts`), and once the
addresses are decided, static externals against every address on the outside
network.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, ValidationError

from natlab.engine.policy import Policy
from natlab.words import plural
from natlab.errors import ConfigError, ErrorList, TopologyError, combined
from natlab.model_errors import address_error, did_you_mean, without_explained_missing
from natlab.yamlsrc import dotted
from natlab.topology.addressing import KeyPath, Locate, build, check
from natlab.topology.conflicts import Problem, Surroundings, parse_address, policy_problems
from natlab.topology.model import (GatewayEntry, HostEntry, NetworkEntry, RouterEntry, Topology,
                                   TopologyFile)


def load(path: str | Path) -> Topology:
    """Read, validate and complete the topology in ``path``."""
    from natlab import yamlsrc

    doc = yamlsrc.load(path)
    return from_data(doc.data, file=doc.source, doc=doc)


def from_data(data: Any, *, file: Optional[str] = None,
              locate: Optional[Locate] = None, doc: Any = None, prefix: KeyPath = (),
              check_behaviours: bool = True) -> Topology:
    """Validate already-parsed YAML data; every error found is raised at once.

    ``doc`` is the :class:`natlab.yamlsrc.Doc` the data came from, if any, and
    ``prefix`` where the topology sits in it (``("topology",)`` when inline in a
    scenario); ``locate`` (default: from ``doc``) turns a key path into a line.
    """
    if locate is None:
        locate = _locator(lambda path: doc.line_of((*prefix, *path))) if doc is not None \
            else (lambda path: None)
    if not isinstance(data, dict):
        raise TopologyError("a topology is a mapping with name, networks, gateways, hosts",
                            got=type(data).__name__, file=file, line=locate(()))
    errors = ErrorList()
    model, broken = _model(data, file, locate, errors)
    if model is None:
        errors.raise_if_any()
    base = Path(file).parent if file else Path.cwd()
    behaviours: dict[str, _Behaviour] = {}
    for name, entry in model.gateways.items():
        with errors.catch():
            behaviours[name] = _resolve_behaviour(name, entry, base, file, locate, doc, prefix,
                                                  check_behaviours, _surroundings(model, entry))
    topo = None
    with errors.catch():
        if broken:  # errors are known already; addresses cannot be picked on missing networks
            check(model, file=file, locate=locate, broken=broken)
        else:
            topo = build(model, file=file, locate=locate, broken=broken)
    errors.raise_if_any()
    assert topo is not None
    for err in _outside_clashes(topo, model, behaviours, file, locate, prefix):
        errors.add(err)
    errors.raise_if_any()
    topo = _with_container_fields(topo, model, file)
    gateways = tuple(dataclasses.replace(g, behaviour=behaviours[g.name].behaviour,
                                         overrides=behaviours[g.name].overrides,
                                         policy=behaviours[g.name].policy,
                                         preset=behaviours[g.name].preset)
                     for g in topo.gateways)
    return dataclasses.replace(topo, gateways=gateways)


# --- the strict model, salvaged so that later checks still run ---------------------------

_SECTIONS = ("networks", "gateways", "hosts", "routers")
_PLACEHOLDER_NAME = "invalid"
_ENTRY: dict[str, type[BaseModel]] = {"networks": NetworkEntry, "gateways": GatewayEntry,
                                      "hosts": HostEntry, "routers": RouterEntry}


def _model(data: dict, file: Optional[str], locate: Locate,
           errors: ErrorList) -> tuple[Optional[TopologyFile], frozenset[str]]:
    """The file's model, with the parts pydantic refused cut out; their errors kept.

    Cutting lets the reference and address checks run on the rest, so one run
    reports everything. Returns (None, ...) when too much is missing to go on.
    ``broken`` is the networks cut out: they exist, references to them are fine.
    """
    try:
        return TopologyFile.model_validate(data), frozenset()
    except ValidationError as exc:
        raw = exc.errors()
    for e in without_explained_missing(raw):
        errors.add(_from_pydantic(e, file, locate))
    work, broken = copy.deepcopy(data), set()
    if not all(_cut(work, tuple(e["loc"]), e["type"], broken) for e in raw):
        return None, frozenset(broken)
    try:
        return TopologyFile.model_validate(work), frozenset(broken)
    except ValidationError:
        return None, frozenset(broken)  # nothing more can be learnt; the errors are kept


def _cut(data: dict, loc: tuple, kind: str, broken: set[str]) -> bool:
    """Remove what ``loc`` points at from ``data``; False if the file cannot go on without it."""
    head = loc[0] if loc else None
    if head == "name":
        data["name"] = _PLACEHOLDER_NAME
        return True
    if head == "networks" and len(loc) == 1:
        return False
    if head not in _SECTIONS or len(loc) == 1:
        data.pop(head, None)  # an unknown top-level key, seed, backend, or a whole section
        return True
    section, name = data.get(head), loc[1]
    if not isinstance(section, dict) or name not in section:
        return True  # already cut
    entry, cls = section[name], _ENTRY[head]
    field = loc[2] if len(loc) > 2 else None
    if isinstance(entry, dict) and field in entry and field != "[key]" and (
            kind == "extra_forbidden" or not cls.model_fields[field].is_required()):
        del entry[field]
    else:
        del section[name]
        if head == "networks":
            broken.add(name)
    return True


def _from_pydantic(e: dict, file: Optional[str], locate: Locate) -> TopologyError:
    """One pydantic error as a TopologyError with a line and a hint."""
    path: KeyPath = tuple(p for p in e["loc"] if not _is_pydantic_tag(p))
    kind = e["type"]
    hint = None
    got: Any = e.get("input")
    if kind == "extra_forbidden":
        what = "unknown key"
        got = path[-1] if path else got
        hint = _known_keys_hint(path)
    elif kind == "missing":
        what = "missing key"
        got = None
        hint = f"add '{path[-1]}'" if path else None
    elif kind == "string_pattern_mismatch":
        what = "bad name"
        hint = "names are lowercase letters, digits and '-', start with a letter, at most 31"
    elif address_error(kind, got):
        what, hint = address_error(kind, got)
    else:
        what = e["msg"].removeprefix("Value error, ")
    if isinstance(got, (dict, list)):
        got = None
    if kind == "string_pattern_mismatch" and len(path) == 2 and path[0] in _SECTIONS:
        got = path[1]  # the bad name is the key itself
    return TopologyError(what, got=got, hint=hint, file=file, line=locate(path),
                         key=".".join(str(p) for p in path) or None)


def _is_pydantic_tag(part: Any) -> bool:
    """pydantic puts ``[key]`` markers in locations of dict keys that failed."""
    return part == "[key]"


def _known_keys_hint(path: KeyPath) -> str:
    cls: Optional[type[BaseModel]] = None
    if len(path) == 1:
        cls = TopologyFile
    elif len(path) == 3:
        cls = _ENTRY.get(str(path[0]))
    if cls is None:
        return "check the spelling"
    known = list(cls.model_fields)
    return did_you_mean(path[-1], known) + "known keys: " + ", ".join(known)


def _locator(line_of: Callable[[tuple], Optional[int]]) -> Locate:
    """A ``locate`` that falls back to the nearest enclosing key with a line."""

    def locate(path: KeyPath) -> Optional[int]:
        for end in range(len(path), -1, -1):
            try:
                line = line_of(tuple(path[:end]))
            except (KeyError, IndexError, TypeError):
                continue
            if line is not None:
                return line
        return None

    return locate


# --- behaviours -------------------------------------------------------------------------

def looks_like_path(behaviour: str) -> bool:
    return "/" in behaviour or behaviour.endswith((".yaml", ".yml"))


@dataclasses.dataclass(frozen=True)
class _Behaviour:
    behaviour: str
    """The preset name, or its path made absolute."""
    overrides: dict
    """Nested."""
    policy: Optional[Policy] = None
    """The preset with the overrides applied; None when not checked."""
    preset: str = ""
    """The preset's own name; empty when not checked."""


def _resolve_behaviour(name: str, entry: GatewayEntry, base: Path, file: Optional[str],
                       locate: Locate, doc: Any, prefix: KeyPath, check: bool,
                       around: Surroundings) -> _Behaviour:
    """The behaviour with a relative path made absolute, overrides nested; checked if ``check``.

    Checked means: the preset loads, the overrides fit it, and the address
    knobs (static, forwards) fit the gateway's pool and subnets (``around``).
    """
    from natlab.behaviours import presets
    from natlab.behaviours.overrides import undot

    behaviour = entry.behaviour
    if looks_like_path(behaviour) and not Path(behaviour).is_absolute():
        behaviour = str((base / behaviour).resolve())
    path = (*prefix, "gateways", name, "overrides")
    errors = ErrorList()
    overrides: dict = {}
    merged: Optional[Policy] = None
    preset_name = ""
    with errors.catch():
        overrides = undot(entry.overrides, doc=doc, path=path)
    if check and not errors:
        policy = Policy()  # an unknown preset still lets the overrides be checked
        with errors.catch():
            preset = presets.load_preset(behaviour)
            policy, preset_name = preset.policy, preset.name
        with errors.catch():
            merged = presets.apply_overrides(policy, entry.overrides, doc=doc, path=path,
                                             **around)
        for problem in policy_problems(policy, **around):
            if problem.path[0] not in overrides:
                errors.add(_preset_problem(problem, entry.behaviour, name, file, locate,
                                           prefix))
    if errors:
        raise combined(_relocate(e, name, file, locate, prefix) for e in errors.errors)
    return _Behaviour(behaviour, overrides, merged, preset_name)


def _surroundings(model: TopologyFile, entry: GatewayEntry) -> Surroundings:
    """What a gateway's address knobs are checked against (a network that is missing: unknown)."""
    def subnet(net: str) -> Any:
        return model.networks[net].subnet if net in model.networks else None

    return Surroundings(pool=tuple(entry.pool or ()), inside=subnet(entry.inside),
                        outside=subnet(entry.outside))


def _policy_error(problem: Problem, name: str, given: Any, behaviour: str, file: Optional[str],
                  locate: Locate, prefix: KeyPath) -> TopologyError:
    """A problem in a gateway's policy, at its overrides if they set that knob, else at the preset."""
    if problem.path[0] in given:
        path: KeyPath = ("gateways", name, "overrides", *problem.path)
        return TopologyError(problem.what, got=problem.got, hint=problem.hint, file=file,
                             line=locate(path), key=dotted((*prefix, *path)))
    return _preset_problem(problem, behaviour, name, file, locate, prefix)


def _preset_problem(problem: Problem, behaviour: str, name: str, file: Optional[str],
                    locate: Locate, prefix: KeyPath) -> TopologyError:
    path: KeyPath = ("gateways", name, "behaviour")
    return problem.from_preset(behaviour).error(file=file, line=locate(path),
                                                key=dotted((*prefix, *path)), cls=TopologyError)


def _outside_clashes(topo: Topology, model: TopologyFile, behaviours: dict[str, "_Behaviour"],
                     file: Optional[str], locate: Locate, prefix: KeyPath) -> list[TopologyError]:
    """Static externals that another node (or a picked pool address) has on the outside network.

    Runs on the decided topology, so picked addresses count: a gateway without
    ``pool`` gets the lowest free address, which may be one its policy claims.
    """
    owner: dict[tuple[str, Any], str] = {}
    for node in topo.nodes:
        for leg in node.legs:
            for iface in leg.addresses:
                owner.setdefault((leg.network, iface.ip), f"{node.kind} '{node.name}'")
    found = []
    for gw in topo.gateways:
        resolved = behaviours.get(gw.name)
        if resolved is None or resolved.policy is None:
            continue
        explicit_pool = set(model.gateways[gw.name].pool or ())
        for i, entry in enumerate(resolved.policy.static):
            addr = parse_address(entry.external)  # checked already
            if addr in explicit_pool:
                continue  # reported with the overrides
            who = owner.setdefault((gw.outside, addr), f"static[{i}] of gateway '{gw.name}'")
            if who == f"static[{i}] of gateway '{gw.name}'":
                continue
            mine = who == f"gateway '{gw.name}'"
            problem = Problem(
                ("static", i, "external"),
                "static external address is the gateway's picked pool address" if mine
                else f"static external address is already used by {who}", str(addr),
                "give the gateway a pool without it, or pick another static address" if mine
                else "every address on a network must be unique; pick another")
            found.append(_policy_error(problem, gw.name, resolved.overrides,
                                       model.gateways[gw.name].behaviour, file, locate, prefix))
    return found


def _relocate(exc: ConfigError, name: str, file: Optional[str], locate: Locate,
              prefix: KeyPath) -> ConfigError:
    """Point a preset error at the topology's line, unless a preset file is at fault."""
    if exc.file == file and exc.line:
        return TopologyError(exc.what, got=exc.got, hint=exc.hint, file=file,
                             line=exc.line, key=exc.key)
    if exc.file and exc.file != file:
        return exc  # the preset file itself is wrong: its own file:line is the news
    own = ".".join(str(p) for p in (*prefix, "gateways", name, "overrides"))
    key = exc.key or ""
    path: KeyPath = ("gateways", name, "behaviour")
    if key == own or key.startswith(own + "."):
        path = ("gateways", name, "overrides", *filter(None, key[len(own) + 1:].split(".")))
    return TopologyError(exc.what, got=exc.got, hint=exc.hint, file=file,
                         line=locate(path), key=".".join(str(p) for p in (*prefix, *path)))


def _with_container_fields(topo: Topology, model: TopologyFile,
                           file: Optional[str]) -> Topology:
    """The backend and the hosts' docker fields; relative volume sources made absolute.

    As in Compose, a source starting with ``.`` or ``~`` is a path (relative to the
    topology file), one starting with ``/`` an absolute path, anything else a named volume.
    """
    base = Path(file).parent if file else Path.cwd()

    def absolute(volume: str) -> str:
        src, sep, rest = volume.partition(":")
        if sep and src.startswith((".", "~")):
            src = str((base / Path(src).expanduser()).resolve())
        return f"{src}{sep}{rest}"

    hosts = tuple(dataclasses.replace(
        h, image=model.hosts[h.name].image, env=dict(model.hosts[h.name].env),
        volumes=tuple(absolute(v) for v in model.hosts[h.name].volumes)) for h in topo.hosts)
    return dataclasses.replace(topo, hosts=hosts, backend=model.backend)


# --- ``natlab validate`` ------------------------------------------------------------

def _is_topology(data: dict) -> bool:
    return "networks" in data and ("hosts" in data or "gateways" in data)


def _validate_topology(doc: Any) -> str:
    topo = from_data(doc.data, file=doc.source, doc=doc)
    return (f"{doc.source}: topology {topo.name!r} is valid ({plural(len(topo.networks), 'network')}, "
            f"{plural(len(topo.gateways), 'gateway')}, {plural(len(topo.hosts), 'host')}, "
            f"{plural(len(topo.routers), 'router')})")


def _register() -> None:
    from natlab import validate

    validate.register("topology", _is_topology, _validate_topology)


_register()
