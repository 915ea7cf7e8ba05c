"""How commands print: tables at full width when piped, JSON for scripts.

On a terminal, tables fit its width as rich lays them out. When stdout is not a
terminal (a pipe, a file, CliRunner) nothing is cut or wrapped: the console is
as wide as the widest row, so ``natlab mappings nat-a | grep 5000`` sees whole
addresses.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

PIPED_WIDTH = 10_000
"""Columns of a console whose stdout is not a terminal: wide enough never to cut."""


def console(stderr: bool = False) -> Console:
    """A console for tables: the terminal's width, or unlimited when piped."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (what every ``--json`` prints)."""
    print(json.dumps(data, indent=2, default=str))


_DEPENDENCY = {
    "endpoint-independent": "EI",
    "address-dependent": "AD",
    "address-and-port-dependent": "APD",
}


def dependency_abbrev(value: str, suffix: str) -> str:
    """``("address-dependent", "F")`` -> ``"ADF"``: RFC 4787's class names at a glance."""
    return _DEPENDENCY.get(value, value) + suffix


def nat_class(policy: dict[str, Any]) -> str:
    """A policy's mapping and filtering as ``EIM/APDF``."""
    return (f"{dependency_abbrev(policy['mapping'], 'M')}/"
            f"{dependency_abbrev(policy['filtering'], 'F')}")


def show_value(value: Any) -> str:
    """A knob's value as typed on the command line: ``30``, ``true``, ``null``, ``none``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
