"""Commands about behaviours: ``behaviours``, ``explain``, ``validate``, ``schema``.

Thin wrappers over :mod:`natlab.behaviours.presets`, :mod:`natlab.behaviours.overrides` and
:mod:`natlab.validate`. Errors are :class:`~natlab.errors.NatlabError` and are
printed by :func:`natlab.errors.report` (one line each).
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from natlab.cli.app import app
from natlab.cli.output import console, dependency_abbrev, show_value
from natlab.engine.policy import Policy
from natlab.errors import ConfigError, report
from natlab.behaviours.overrides import flatten, parse_assignments
from natlab.behaviours.presets import (Preset, behaviour_schema, list_presets, policy_schema,
                            policy_to_dict, resolve)
from natlab.validate import validate_file

# Which RFC requirement each knob maps to (RFC 4787 unless named otherwise).
REQUIREMENTS: dict[str, str] = {
    "mapping": "REQ-1; RFC 5382 REQ-1",
    "filtering": "REQ-8; RFC 5382 REQ-3",
    "pooling": "REQ-2; RFC 6888 REQ-2",
    "port_assignment": "REQ-3; RFC 5382 REQ-7",
    "port_range": "REQ-3",
    "port_parity": "REQ-4",
    "port_block": "RFC 6888 REQ-4; RFC 7422",
    "timeouts.udp": "REQ-5 (>= 120 s, 300 s recommended)",
    "timeouts.udp_unreplied": "REQ-5",
    "timeouts.tcp_established": "RFC 5382 REQ-5 (>= 7440 s)",
    "timeouts.tcp_transitory": "RFC 5382 REQ-5 (>= 240 s)",
    "timeouts.icmp": "RFC 5508 REQ-2 (>= 60 s)",
    "timeouts.udp_stream_after": "REQ-5 (Linux conntrack \"stream\")",
    "timeouts.tcp_rst": "RFC 5382 REQ-5",
    "refresh": "REQ-6",
    "hairpinning": "REQ-9, REQ-9a; RFC 5382 REQ-8",
    "hairpin_filtering": "REQ-8 on hairpinned packets (section 6)",
    "inbound_first": "REQ-1 (remap: Linux conntrack clash)",
    "icmp.echo": "RFC 5508 REQ-1",
    "icmp.errors": "RFC 5508 REQ-3..5; RFC 5382 REQ-9",
    "tcp.unsolicited_syn": "RFC 5382 REQ-4",
    "tcp.syn_hold": "RFC 5382 REQ-4 (>= 6 s)",
    "fragments": "REQ-14",
    "limits": "RFC 6888 REQ-4, REQ-5",
    "forwards": "static port forwards",
    "static": "static 1:1 NAT",
    "port_mapping.natpmp": "RFC 6886 (UDP 5351)",
    "port_mapping.pcp": "RFC 6887 (UDP 5351)",
    "port_mapping.upnp": "UPnP IGD WANIPConnection (SSDP 1900, HTTP 5000)",
    "port_mapping.min_lifetime": "RFC 6887 section 15",
    "port_mapping.max_lifetime": "RFC 6887 section 15",
    "port_mapping.allow_third_party": "RFC 6887 section 13.1 THIRD_PARTY",
    "port_mapping.epoch_on_reboot": "RFC 6886 3.6; RFC 6887 8.5",
    "port_mapping.max_pcp_filters": "RFC 6887 section 13.3 FILTER",
    "port_mapping.pcp_interworking": "RFC 6970 (IGD-PCP interworking)",
    "port_mapping": "NAT-PMP / PCP / UPnP IGD server",
}

class SchemaKind(str, Enum):
    behaviour = "behaviour"
    policy = "policy"


def requirement_of(knob: str) -> str:
    """The RFC requirement a dotted knob name maps to ('' if none)."""
    return REQUIREMENTS.get(knob) or REQUIREMENTS.get(knob.split(".")[0], "")


def _preset_json(preset: Preset) -> dict[str, Any]:
    return {
        "name": preset.name, "summary": preset.summary, "extends": preset.extends,
        "source": str(preset.source) if preset.source else None,
        "notes": preset.notes, "policy": policy_to_dict(preset.policy),
    }


@app.command("behaviours")
def behaviours_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the behaviour presets (mapping: EIM/ADM/APDM, filtering: EIF/ADF/APDF)."""
    presets = list_presets()
    if as_json:
        typer.echo(json.dumps([_preset_json(p) for p in presets], indent=2))
        return
    table = Table(title="natlab behaviours")
    for column in ("name", "mapping", "filtering", "pooling", "ports", "hairpinning"):
        table.add_column(column, no_wrap=True)
    table.add_column("summary", overflow="fold", min_width=20)
    for p in presets:
        pol = p.policy
        table.add_row(p.name, dependency_abbrev(pol.mapping.value, "M"),
                      dependency_abbrev(pol.filtering.value, "F"),
                      pol.pooling.value, pol.port_assignment.value, pol.hairpinning.value,
                      p.summary)
    console().print(table)


@app.command("explain")
def explain_cmd(
    name: Annotated[str, typer.Argument(help="Preset name or path to a behaviour .yaml file.")],
    assignments: Annotated[Optional[list[str]], typer.Option(
        "--set", "-s", metavar="KNOB=VALUE", help="Override a knob, e.g. timeouts.udp=30.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every knob of a preset, the RFC requirement it maps to, and its notes."""
    preset = resolve(name, parse_assignments(assignments or []))
    if as_json:
        data = _preset_json(preset)
        data["requirements"] = {k: requirement_of(k) for k in flatten(data["policy"])}
        typer.echo(json.dumps(data, indent=2))
        return
    out = console()
    out.print(f"[bold]{preset.name}[/bold]: {preset.summary}")
    where = f"from {preset.source}" if preset.source else ""
    if preset.extends:
        where += f", extends {preset.extends}"
    if assignments:
        where += ", with " + " ".join(assignments)
    if where:
        out.print(where.lstrip(", "), style="dim")
    out.print(_knob_table(preset.policy))
    for key, text in preset.notes.items():
        out.print(f"\n[bold]{key.replace('_', ' ')}[/bold]\n{text}")


def _knob_table(policy: Policy) -> Table:
    """Every knob, grouped by section, with the RFC-recommended value beside it."""
    table = Table(show_lines=False)
    table.add_column("knob", no_wrap=True)
    table.add_column("value", no_wrap=True)
    table.add_column("RFC default", overflow="fold")
    table.add_column("requirement", overflow="fold")
    rfc = flatten(policy_to_dict(Policy()))
    section = None
    for knob, value in flatten(policy_to_dict(policy)).items():
        head = knob.split(".")[0] if "." in knob else None
        if head != section:
            table.add_section()
            section = head
        default = rfc.get(knob)
        marker = "" if default == value else show_value(default)
        style = "yellow" if marker else None
        table.add_row(knob, show_value(value), marker, requirement_of(knob), style=style)
    return table


@app.command("validate")
def validate_cmd(
    files: Annotated[list[Path], typer.Argument(help="natlab YAML files to check.")],
) -> None:
    """Validate natlab files (topologies, scenarios, behaviours); every error of every file."""
    failed = 0
    for file in files:
        try:
            typer.echo(validate_file(file))
        except ConfigError as err:
            failed += 1
            print(report(err), file=sys.stderr)
    if failed:
        raise typer.Exit(1)


@app.command("schema")
def schema_cmd(
    kind: Annotated[SchemaKind, typer.Argument(help="behaviour (a preset file) or policy.")]
    = SchemaKind.behaviour,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE.")]
    = None,
) -> None:
    """Print the JSON Schema of a behaviour file or of a policy (for editors)."""
    schema = behaviour_schema() if kind is SchemaKind.behaviour else policy_schema()
    text = schema_text(schema)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise ConfigError("cannot write schema", got=str(output), hint=err.strerror) from None


def schema_text(schema: dict[str, Any]) -> str:
    """The schema as shipped in natlab/schemas/: indented JSON with a final newline."""
    return json.dumps(schema, indent=2) + "\n"
