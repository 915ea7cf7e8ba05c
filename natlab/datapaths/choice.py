"""A forced datapath with options: ``dpdk:workers=2:driver=af_packet``.

``--datapath`` (and ``--natlab-datapath``, ``$NATLAB_DATAPATH``) name a datapath and may
set its options for every gateway, over what each gateway's ``dpdk:`` or
``kernel_cache:`` block says: the same scenario files and matrix then run with two DPDK
workers without editing a topology. Values are read as YAML scalars (``2`` is a number);
they are checked against the same schema as the topology's blocks, every error at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from natlab.errors import ConfigError

OPTION_BLOCKS = {"kernel-cache": ("kernel_cache", "quantum=0.5"), "dpdk": ("dpdk", "workers=2")}
"""Datapath -> (the gateway key holding its options, an example); the others take none."""


@dataclass(frozen=True)
class Choice:
    name: str
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __str__(self) -> str:
        return ":".join([self.name, *(f"{k}={_scalar(v)}" for k, v in self.options.items())])


def _scalar(value: Any) -> str:
    """A value as :func:`_value` reads it back (lists comma-joined, booleans in YAML's spelling)."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def parse(text: str, check_name: Any) -> Choice:
    """``NAME[:KEY=VALUE]...`` as a Choice; ``check_name(name)`` vets the name (raises)."""
    name, *pairs = [part.strip() for part in str(text).strip().split(":")]
    name = check_name(name)
    if not pairs:
        return Choice(name)
    block, example = OPTION_BLOCKS.get(name, (None, None))
    if block is None:
        raise ConfigError(f"the {name} datapath takes no options", got=text, hint=f"--datapath {name}")
    options: dict[str, Any] = {}
    problems = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            problems.append(ConfigError("a datapath option is KEY=VALUE", got=pair, hint=f"e.g. {name}:{example}"))
            continue
        options[key.strip()] = _value(key.strip(), value.strip())
    problems += _schema_problems(name, block, options)
    if problems:
        from natlab.errors import combined

        raise combined(problems)
    return Choice(name, options)


def _value(key: str, text: str) -> Any:
    if key in ("ports", "eal_args"):
        return [v for v in text.split(",") if v]
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


def _schema_problems(name: str, block: str, options: dict[str, Any]) -> list[ConfigError]:
    """The topology schema's verdict on ``options`` (the gateway's ``block:`` entry)."""
    import pydantic

    from natlab.topology.model import GatewayEntry

    entry = GatewayEntry.model_fields[block].annotation
    try:
        entry.model_validate(options)  # type: ignore[union-attr]
    except pydantic.ValidationError as err:
        return [ConfigError(f"bad {name} datapath option: {e['msg']}", key=".".join([block, *map(str, e["loc"])]),
                            got=e.get("input"), hint=", ".join(entry.model_fields))  # type: ignore[union-attr]
                for e in err.errors()]
    return []
