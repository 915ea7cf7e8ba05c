"""Safe YAML loading that remembers where every key and value came from.

Theory of operation
-------------------
PyYAML's :class:`yaml.SafeLoader` composes the text into a node tree whose
nodes carry start marks. Instead of letting the loader build Python objects
directly, :func:`loads` walks that tree itself: scalars are constructed by the
safe constructor, mappings and sequences become plain ``dict`` and ``list``,
and on the way the line of every key (and every value) is recorded under its
*path*, a tuple of keys and list indexes such as ``("gateways", "nat-a")``.

Any problem becomes a :class:`~natlab.errors.ConfigError` naming ``file:line``:
a syntax error or an unsupported tag stops at once, duplicate keys are all
reported together (:class:`~natlab.errors.ConfigErrors`). Nothing here knows
about NATs, so topologies and scenarios reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Sequence

import yaml

from natlab.errors import ConfigError, ErrorList

__all__ = ["Doc", "KeyPath", "dotted", "load", "loads"]

KeyPath = tuple[Hashable, ...]
"""A path into a document: mapping keys and list indexes, outermost first."""

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class _Loader(yaml.SafeLoader):
    """The safe loader; used only to compose nodes and construct scalars."""


@dataclass(frozen=True)
class Doc:
    """A loaded YAML document: plain ``data`` plus the line of every path."""

    data: Any
    source: str = "<string>"
    key_lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)
    value_lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)

    def line_of(self, path: Sequence[Hashable] = ()) -> int | None:
        """Line of the key at ``path``, else of its nearest recorded parent."""
        return _nearest(self.key_lines, tuple(path))

    def value_line_of(self, path: Sequence[Hashable] = ()) -> int | None:
        """Line where the value at ``path`` starts (nearest parent as fallback)."""
        return _nearest(self.value_lines, tuple(path))

    def error(self, what: str, path: Sequence[Hashable] = (), **kw: Any) -> ConfigError:
        """A ConfigError located at ``path`` in this document."""
        return ConfigError(what, file=self.source, line=self.line_of(path),
                           key=dotted(path) or None, **kw)


def _nearest(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def dotted(path: Sequence[Hashable]) -> str:
    """``("forwards", 0, "protocol")`` -> ``"forwards[0].protocol"``."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def load(path: str | Path) -> Doc:
    """Read and load a YAML file (safe loader only)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError("cannot read file", got=str(path), hint=err.strerror,
                          file=str(path)) from None
    return loads(text, source=str(path))


def loads(text: str, source: str = "<string>") -> Doc:
    """Load one YAML document from ``text``; ``source`` names it in errors."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Doc(None, source)
        builder = _Builder(loader, source)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as err:
        raise _syntax_error(err, source) from None
    except yaml.YAMLError as err:
        raise ConfigError("invalid YAML", got=str(err), file=source) from None
    finally:
        loader.dispose()
    builder.errors.raise_if_any()
    return Doc(data, source, builder.key_lines, builder.value_lines)


def _syntax_error(err: yaml.MarkedYAMLError, source: str) -> ConfigError:
    mark = err.problem_mark or err.context_mark
    line = mark.line + 1 if mark else None
    problem = err.problem or "invalid YAML"
    if err.context:
        problem = f"{err.context}, {problem}"
    return ConfigError(f"YAML syntax error: {problem}", file=source, line=line)


class _Builder:
    """Walks a composed node tree into plain data, recording lines by path."""

    def __init__(self, loader: _Loader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.key_lines: dict[KeyPath, int] = {}
        self.value_lines: dict[KeyPath, int] = {}
        self._active: set[int] = set()
        self.errors = ErrorList()

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.value_lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in self._active:
            raise self._error("recursive alias", node, path)
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path)
            return self.loader.construct_object(node, deep=True)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict:
        self._check_tag(node, _MAP_TAG, path)
        self.loader.flatten_mapping(node)  # resolves "<<" merge keys
        result: dict = {}
        first_line: dict[Hashable, int] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable) or isinstance(key, (list, dict)):
                raise self._error("a mapping key must be a plain scalar", key_node, path)
            if key in first_line:
                self.errors.add(ConfigError(f"duplicate key {key!r}", file=self.source, line=line,
                                            key=dotted(path + (key,)),
                                            hint=f"first given on line {first_line[key]}"))
                continue
            first_line[key] = line
            self.key_lines[path + (key,)] = line
            result[key] = self.build(value_node, path + (key,))
        return result

    def _sequence(self, node: yaml.SequenceNode, path: KeyPath) -> list:
        self._check_tag(node, _SEQ_TAG, path)
        items = []
        for index, item in enumerate(node.value):
            self.key_lines[path + (index,)] = item.start_mark.line + 1
            items.append(self.build(item, path + (index,)))
        return items

    def _check_tag(self, node: yaml.Node, expected: str, path: KeyPath) -> None:
        if node.tag != expected:
            raise self._error(f"unsupported YAML tag {node.tag!r}", node, path)

    def _error(self, what: str, node: yaml.Node, path: KeyPath) -> ConfigError:
        return ConfigError(what, file=self.source, line=node.start_mark.line + 1,
                           key=dotted(path) or None)
