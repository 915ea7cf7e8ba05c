"""Behaviour presets: named YAML files that expand to one :class:`Policy`.

Theory of operation
-------------------
A preset file (``behaviours/<name>.yaml``) has a small header (name, summary,
optional ``extends``, notes) and a ``policy`` mapping in RFC 4787 vocabulary.
Loading goes: safe YAML with line numbers (:mod:`natlab.yamlsrc`) -> header
validated into :class:`PresetFile` -> the parent preset's policy (``extends``,
resolved recursively, cycles refused) deep-merged with this file's ``policy``
-> validated into a frozen :class:`Policy` by pydantic.

Every pydantic error becomes a :class:`ConfigError` naming the file, line,
dotted key, the value given and what is allowed; all of a file's errors are
raised together (:class:`~natlab.errors.ConfigErrors`, sorted by line). Knobs
under ``policy:`` and in overrides may be nested or dotted (``timeouts.udp: 30``).
Presets are searched in ``$NATLAB_BEHAVIOURS``, then the shipped ones (package data,
:mod:`natlab.shipped`); first match wins.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated, Any, Hashable, Mapping, Optional, Sequence

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from natlab.engine.policy import Policy
from natlab.errors import ConfigError, ErrorList
from natlab.model_errors import did_you_mean, without_explained_missing
from natlab.behaviours.overrides import knob_lines, undot
from natlab.shipped import shipped_dir
from natlab.yamlsrc import Doc, dotted, load

__all__ = [
    "Notes", "Preset", "PresetFile", "address_conflicts", "apply_overrides", "behaviour_schema",
    "list_presets", "load_preset", "policy_from_dict", "policy_schema",
    "policy_to_dict", "preset_from_doc", "preset_names", "resolve", "search_path",
]

_STRICT = ConfigDict(extra="forbid")
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Notes:
    """What a preset models, in words."""

    __pydantic_config__ = _STRICT
    rfc: Annotated[Optional[str], Field(description="RFC 4787/5382/5508 terms (EIM, APDF, ...)")] = None
    observed_on: Annotated[Optional[str], Field(description="devices/software known to behave so")] = None
    hole_punching: Annotated[Optional[str], Field(description="what it means for hole punching")] = None


@dataclass(frozen=True)
class PresetFile:
    """The shape of a behaviour preset file (``behaviours/<name>.yaml``)."""

    __pydantic_config__ = ConfigDict(extra="forbid", title="natlab behaviour preset")
    name: Annotated[str, Field(description="preset name; must match the file name")]
    summary: Annotated[str, Field(description="one line")]
    extends: Annotated[Optional[str], Field(description="parent preset name or path")] = None
    notes: Notes = field(default_factory=Notes)
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True)
class Preset:
    """A resolved preset: its words and the policy it expands to."""

    name: str
    summary: str
    notes: dict[str, str]
    policy: Policy
    source: Optional[Path] = None
    extends: Optional[str] = None


_POLICY = TypeAdapter(Policy)
_HEADER = TypeAdapter(PresetFile)


# --- policy <-> dict -------------------------------------------------------

def policy_from_dict(data: Any, *, doc: Optional[Doc] = None,
                     path: Sequence[Hashable] = ()) -> Policy:
    """Validate untrusted ``data`` into a Policy; errors name file, line and key."""
    return _validate(_POLICY, Policy, data, doc, tuple(path))


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """Plain JSON-able dict (enum values as strings); inverse of policy_from_dict."""
    return _POLICY.dump_python(policy, mode="json")


def apply_overrides(policy: Policy, overrides: Mapping[str, Any], *,
                    doc: Optional[Doc] = None, path: Sequence[Hashable] = (),
                    pool: Sequence[Any] = (), inside: Optional[IPv4Network] = None,
                    outside: Optional[IPv4Network] = None) -> Policy:
    """Deep-merge a partial dict (nested or dotted knobs) onto ``policy``, re-validated.

    The ``static`` and ``forwards`` the overrides give are checked for address
    conflicts too (:mod:`natlab.topology.conflicts`): on their own, and against
    the gateway's ``pool`` and ``inside``/``outside`` subnets where known.
    """
    if not overrides:
        return policy
    if not isinstance(overrides, Mapping):
        raise _error("overrides must be a mapping of knob: value", doc, tuple(path),
                     got=overrides)
    nested = undot(overrides, doc=doc, path=path)
    merged = deep_merge(policy_to_dict(policy), nested)
    located = knob_lines(overrides, doc, path)
    errors = ErrorList()
    for err in address_conflicts(merged, nested, doc=located, path=path, pool=pool,
                                 inside=inside, outside=outside):
        errors.add(err)
    result = None
    with errors.catch():
        result = policy_from_dict(merged, doc=located, path=path)
    errors.raise_if_any()
    return result


def address_conflicts(policy: Any, given: Mapping[str, Any], *, doc: Optional[Doc] = None,
                      path: Sequence[Hashable] = (), pool: Sequence[Any] = (),
                      inside: Optional[IPv4Network] = None,
                      outside: Optional[IPv4Network] = None) -> list[ConfigError]:
    """Address conflicts in the knobs ``given`` sets (a nested dict), located under ``path``.

    ``policy`` is the merged policy (a Policy or its dict form, even one that
    fails the schema); knobs not in ``given`` came from elsewhere and are left
    to whoever set them.
    """
    from natlab.topology.conflicts import policy_problems

    return [_error(p.what, doc, (*tuple(path), *p.path), got=p.got, hint=p.hint)
            for p in policy_problems(policy, pool, inside, outside) if p.path[0] in given]


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in; nested mappings merge, others replace."""
    merged = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def policy_schema() -> dict[str, Any]:
    """JSON Schema of a policy mapping."""
    return _POLICY.json_schema()


def behaviour_schema() -> dict[str, Any]:
    """JSON Schema of a behaviour preset file (shipped in natlab/schemas/)."""
    schema = _HEADER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["required"] = ["name", "summary"]
    return schema


# --- pydantic errors -> ConfigErrors -----------------------------------------

def _validate(adapter: TypeAdapter, root: type, data: Any, doc: Optional[Doc],
              path: tuple) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as err:
        errors = ErrorList()
        for error in without_explained_missing(err.errors(include_url=False)):
            errors.add(_convert(error, root, doc, path))
        errors.raise_if_any()
        raise AssertionError("unreachable: pydantic failed without errors") from None


def _convert(error: dict, root: type, doc: Optional[Doc], path: tuple) -> ConfigError:
    loc = tuple(error["loc"])
    kind, value = error["type"], error.get("input")
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        what, got, hint = _unknown_key(root, loc, path)
    elif kind == "missing":
        what, got = f"missing required key {loc[-1]!r}", None
        hint = "required in " + (dotted(path + loc[:-1]) or "the document")
    elif kind == "value_error":
        what, got, hint = str(error["ctx"]["error"]), value, None
    else:
        what, got = "invalid value", value
        hint = "allowed: " + describe(_type_at(root, loc))
    return _error(what, doc, path + loc, got=got, hint=hint)


def _unknown_key(root: type, loc: tuple, path: tuple) -> tuple[str, Any, str]:
    name, section = loc[-1], _type_at(root, loc[:-1])
    valid = _field_names(section)
    hint = f"valid keys in {dotted(path + loc[:-1]) or 'the document'}: {', '.join(valid)}"
    return f"unknown key {name!r}", None, did_you_mean(name, valid) + hint


def _error(what: str, doc: Optional[Doc], path: tuple, **kw: Any) -> ConfigError:
    if doc is not None:
        return doc.error(what, path, **kw)
    return ConfigError(what, key=dotted(path) or None, **kw)


def _unwrap(tp: Any) -> tuple[Any, list, bool]:
    """Strip Annotated/Optional: (base type, constraint objects, optional?)."""
    constraints: list = []
    optional = False
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            for meta in tp.__metadata__:
                constraints.extend(meta.metadata if isinstance(meta, FieldInfo) else [meta])
            tp = tp.__origin__
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(tp))
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp, constraints, optional
        else:
            return tp, constraints, optional


def _type_at(root: type, loc: Sequence[Hashable]) -> Any:
    """The annotated type found at ``loc`` below ``root`` (None if unknown)."""
    tp: Any = root
    for part in loc:
        base = _unwrap(tp)[0]
        if dataclasses.is_dataclass(base) and isinstance(part, str):
            tp = typing.get_type_hints(base, include_extras=True).get(part)
        elif typing.get_origin(base) is tuple and isinstance(part, int):
            tp = typing.get_args(base)[0]
        else:
            return None
        if tp is None:
            return None
    return tp


def _field_names(tp: Any) -> list[str]:
    base = _unwrap(tp)[0]
    return [f.name for f in dataclasses.fields(base)] if dataclasses.is_dataclass(base) else []


def describe(tp: Any) -> str:
    """Human words for what a field accepts, e.g. 'an integer from 1 to 65535'."""
    if tp is None:
        return "see `natlab schema`"
    base, constraints, optional = _unwrap(tp)
    if isinstance(base, type) and issubclass(base, Enum):
        text = "one of " + ", ".join(str(m.value) for m in base)
    elif base is bool:
        text = "true or false"
    elif base in (int, float):
        text = _describe_number(base, constraints)
    elif dataclasses.is_dataclass(base):
        text = "a mapping with keys " + ", ".join(_field_names(base))
    elif typing.get_origin(base) is tuple:
        text = "a list of " + describe(typing.get_args(base)[0])
    elif base is str:
        text = "a string"
    else:
        text = str(base)
    return text + (", or null" if optional else "")


def _describe_number(base: type, constraints: list) -> str:
    noun = "an integer" if base is int else "a number"
    bounds = {name: getattr(c, name) for c in constraints
              for name in ("gt", "ge", "lt", "le") if getattr(c, name, None) is not None}
    low, high = bounds.get("ge"), bounds.get("le")
    if low is not None and high is not None:
        return f"{noun} in the range {_num(low)}-{_num(high)}"
    parts = [f"{op} {_num(bounds[key])}" for key, op in
             (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")) if key in bounds]
    return f"{noun} {' and '.join(parts)}" if parts else noun


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --- discovery ---------------------------------------------------------------

def search_path() -> list[Path]:
    """Directories searched for presets, first match wins."""
    dirs = [Path(p) for p in os.environ.get("NATLAB_BEHAVIOURS", "").split(os.pathsep) if p]
    dirs.append(shipped_dir("behaviours"))
    return dirs


def _index() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in search_path():
        if directory.is_dir():
            for file in sorted(directory.iterdir()):
                if file.suffix in _SUFFIXES and file.is_file():
                    found.setdefault(file.stem, file)
    return found


def preset_names() -> list[str]:
    """Names of every preset on the search path, sorted."""
    return sorted(_index())


def list_presets() -> list[Preset]:
    """Every preset on the search path, loaded, sorted by name."""
    return [load_preset(path) for _, path in sorted(_index().items())]


def _find(name: str, doc: Optional[Doc] = None, path: tuple = ()) -> Path:
    index = _index()
    if name in index:
        return index[name]
    hint = did_you_mean(name, list(index)) + "known presets: " + (", ".join(sorted(index)) or "none")
    raise _error("unknown preset", doc, path, got=name, hint=hint)


def _looks_like_path(text: str) -> bool:
    return text.endswith(_SUFFIXES) or "/" in text or os.sep in text


# --- loading -----------------------------------------------------------------

def load_preset(name_or_path: str | Path) -> Preset:
    """Load a preset by name (search path) or by path to a .yaml file."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        return _load_file(Path(text), ())
    return _load_file(_find(text), ())


def resolve(name_or_path: str | Path, overrides: Optional[Mapping[str, Any]] = None) -> Preset:
    """Load a preset and apply ``overrides`` (a partial policy dict) on top."""
    preset = load_preset(name_or_path)
    if not overrides:
        return preset
    return dataclasses.replace(preset, policy=apply_overrides(preset.policy, overrides))


def preset_from_doc(doc: Doc) -> Preset:
    """Build a preset from an already loaded YAML document."""
    return _from_doc(doc, (_chain_key(doc),))


def _load_file(file: Path, chain: tuple[str, ...]) -> Preset:
    if not file.is_file():
        raise ConfigError("no such preset file", got=str(file))
    doc = load(file)
    key = _chain_key(doc)
    if key in chain:
        names = [Path(c).stem for c in chain] + [file.stem]
        raise ConfigError("extends cycle", got=" -> ".join(names),
                          hint="a preset may not extend itself, directly or indirectly")
    return _from_doc(doc, chain + (key,))


def _chain_key(doc: Doc) -> str:
    return str(Path(doc.source).resolve()) if doc.source.endswith(_SUFFIXES) else doc.source


def _from_doc(doc: Doc, chain: tuple[str, ...]) -> Preset:
    """Header, name, parent and policy are checked independently; all errors raised together."""
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error("a behaviour file must be a mapping with name, summary and policy",
                        got=type(data).__name__)
    errors = ErrorList()
    raw_policy = data.get("policy", {})
    if not isinstance(raw_policy, dict):
        errors.add(doc.error("policy must be a mapping of knobs", ("policy",), got=raw_policy))
        raw_policy = {}
    header: Optional[PresetFile] = None
    with errors.catch():
        header = _validate(_HEADER, PresetFile, {k: v for k, v in data.items() if k != "policy"},
                           doc, ())
        _check_name(header, doc)
    extends = header.extends if header else data.get("extends")
    base: dict[str, Any] = {}
    notes = {k: v for k, v in dataclasses.asdict(header.notes).items() if v} if header else {}
    if isinstance(extends, str) and extends:
        with errors.catch():
            parent = _load_parent(extends, doc, chain)
            base, notes = policy_to_dict(parent.policy), {**parent.notes, **notes}
    policy = None
    with errors.catch():
        changes = undot(raw_policy, doc=doc, path=("policy",))
        merged, located = deep_merge(base, changes), knob_lines(raw_policy, doc, ("policy",))
        for err in address_conflicts(merged, changes, doc=located, path=("policy",)):
            errors.add(err)
        policy = policy_from_dict(merged, path=("policy",), doc=located)
    errors.raise_if_any()
    assert header is not None and policy is not None
    source = Path(doc.source) if doc.source.endswith(_SUFFIXES) else None
    return Preset(header.name, header.summary, notes, policy, source, header.extends)


def _check_name(header: PresetFile, doc: Doc) -> None:
    if not doc.source.endswith(_SUFFIXES):
        return
    stem = Path(doc.source).stem
    if header.name != stem:
        raise doc.error("preset name does not match its file name", ("name",),
                        got=header.name, hint=f"name it {stem!r} or rename the file")


def _load_parent(extends: str, doc: Doc, chain: tuple[str, ...]) -> Preset:
    here = Path(doc.source).parent
    if _looks_like_path(extends):
        file = here / extends
        if not file.is_file():
            raise doc.error("extends names a missing file", ("extends",), got=extends)
    else:
        sibling = [here / (extends + s) for s in _SUFFIXES if (here / (extends + s)).is_file()]
        file = sibling[0] if sibling else _find(extends, doc, ("extends",))
    try:
        return _load_file(file, chain)
    except ConfigError as err:
        if err.what == "extends cycle" and err.file is None:
            raise doc.error(err.what, ("extends",), got=err.got, hint=err.hint) from None
        raise
