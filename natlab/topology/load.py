"""Topology file -> :class:`Topology`, every error naming file, line and key.

YAML is read by :mod:`natlab.yamlsrc` (safe loading, a line for every key),
validated by the strict models in :mod:`natlab.topology.model`, checked and
completed by :func:`natlab.topology.addressing.build`; finally each gateway's
behaviour is resolved once through :mod:`natlab.presets` so that an unknown
preset or a bad override fails here, before anything is created.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import ValidationError

from natlab.errors import ConfigError, TopologyError
from natlab.topology.addressing import KeyPath, Locate, build
from natlab.topology.model import Gateway, Topology, TopologyFile


def load(path: str | Path) -> Topology:
    """Read, validate and complete the topology in ``path``."""
    from natlab import yamlsrc

    doc = yamlsrc.load(path)
    return from_data(doc.data, file=doc.source, locate=_locator(doc.line_of), doc=doc)


def from_data(data: Any, *, file: Optional[str] = None,
              locate: Locate = lambda path: None, doc: Any = None,
              check_behaviours: bool = True) -> Topology:
    """Validate already-parsed YAML data (``file``/``locate``/``doc`` only improve errors).

    ``doc`` is the :class:`natlab.yamlsrc.Doc` the data came from, if any.
    """
    if not isinstance(data, dict):
        raise TopologyError("a topology is a mapping with name, networks, gateways, hosts",
                            got=type(data).__name__, file=file, line=locate(()))
    try:
        model = TopologyFile.model_validate(data)
    except ValidationError as exc:
        raise _from_pydantic(exc, file, locate) from None
    topo = _with_container_fields(build(model, file=file, locate=locate), model, file)
    if check_behaviours:
        base = Path(file).parent if file else Path.cwd()
        gateways = tuple(_resolve_behaviour(g, base, file, locate, doc) for g in topo.gateways)
        topo = dataclasses.replace(topo, gateways=gateways)
    return topo


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


def looks_like_path(behaviour: str) -> bool:
    return "/" in behaviour or behaviour.endswith((".yaml", ".yml"))


def _resolve_behaviour(gw: Gateway, base: Path, file: Optional[str],
                       locate: Locate, doc: Any) -> Gateway:
    from natlab import presets

    behaviour = gw.behaviour
    if looks_like_path(behaviour) and not Path(behaviour).is_absolute():
        behaviour = str((base / behaviour).resolve())
    try:
        preset = presets.load_preset(behaviour)
        presets.apply_overrides(preset.policy, gw.overrides, doc=doc,
                                path=("gateways", gw.name, "overrides"))
    except TopologyError:
        raise
    except ConfigError as exc:
        raise _relocate(exc, gw, file, locate) from None
    return dataclasses.replace(gw, behaviour=behaviour)


def _relocate(exc: ConfigError, gw: Gateway, file: Optional[str],
              locate: Locate) -> ConfigError:
    """Point a preset error at the topology's line, unless a preset file is at fault."""
    first = (exc.key or "").split(".")[0]
    if exc.file == file and exc.line:
        return TopologyError(exc.what, got=exc.got, hint=exc.hint, file=file,
                             line=exc.line, key=exc.key)
    if first and first in gw.overrides:
        path: KeyPath = ("gateways", gw.name, "overrides", *exc.key.split("."))
    elif exc.file and exc.file != file:
        return exc  # the preset file itself is wrong: its own file:line is the news
    else:
        path = ("gateways", gw.name, "behaviour")
    return TopologyError(exc.what, got=exc.got, hint=exc.hint, file=file,
                         line=locate(path), key=".".join(str(p) for p in path))


def _from_pydantic(exc: ValidationError, file: Optional[str], locate: Locate) -> TopologyError:
    """The first pydantic error as one TopologyError with a line and a hint."""
    e = exc.errors()[0]
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
    else:
        what = e["msg"].removeprefix("Value error, ")
    if isinstance(got, (dict, list)):
        got = None
    if kind == "string_pattern_mismatch" and len(path) == 2 and path[0] in _SECTIONS:
        got = path[1]  # the bad name is the key itself
    return TopologyError(what, got=got, hint=hint, file=file, line=locate(path),
                         key=".".join(str(p) for p in path) or None)


_SECTIONS = ("networks", "gateways", "hosts", "routers")


def _is_pydantic_tag(part: Any) -> bool:
    """pydantic puts ``[key]`` markers in locations of dict keys that failed."""
    return part == "[key]"


def _known_keys_hint(path: KeyPath) -> str:
    from natlab.topology import model

    by_depth = {
        0: model.TopologyFile,
        2: {"networks": model.NetworkEntry, "gateways": model.GatewayEntry,
            "hosts": model.HostEntry, "routers": model.RouterEntry},
    }
    cls = None
    if len(path) == 1:
        cls = by_depth[0]
    elif len(path) == 3:
        cls = by_depth[2].get(str(path[0]))
    if cls is None:
        return "check the spelling"
    return "known keys: " + ", ".join(cls.model_fields)


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


# --- ``natlab validate`` ------------------------------------------------------------

def _is_topology(data: dict) -> bool:
    return "networks" in data and ("hosts" in data or "gateways" in data)


def _validate_topology(doc: Any) -> str:
    topo = from_data(doc.data, file=doc.source, locate=_locator(doc.line_of), doc=doc)
    return (f"{doc.source}: topology {topo.name!r} is valid ({len(topo.networks)} networks, "
            f"{len(topo.gateways)} gateways, {len(topo.hosts)} hosts, "
            f"{len(topo.routers)} routers)")


def _register() -> None:
    from natlab import validate

    validate.register("topology", _is_topology, _validate_topology)


_register()
