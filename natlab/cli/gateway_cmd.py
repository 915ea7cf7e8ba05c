"""Commands that talk to a running gateway: mappings, events, set, configure, advance,
flush, counters, capture.

Each finds the gateway's control socket through the lab's state
(:func:`natlab.realisers.netns.state.resolve_node`: without ``--lab``, the one lab up that has
a gateway of that name) and calls :class:`GatewayClient`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.live import Live
from rich.table import Table

from natlab.cli.app import app
from natlab.cli.output import console, nat_class, print_json, show_value
from natlab.errors import ConfigError, ControlError
from natlab.gateway.client import GatewayClient
from natlab.words import plural

Gw = Annotated[str, typer.Argument(help="The gateway's name in the topology.", show_default=False)]
LabOpt = Annotated[Optional[str], typer.Option("--lab", "-l", help="The lab (default: the only one up).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _gateway(gw: str, lab: Optional[str]) -> dict[str, Any]:
    from natlab.realisers.netns.state import resolve_node

    state = resolve_node(gw, lab, kinds=("gateways",))
    if gw not in state.gateways:
        names = ", ".join(state.gateways) or "none"
        raise ControlError(f"lab '{state.name}' has no gateway named '{gw}'", got=gw,
                           hint=f"its gateways are: {names}")
    return state.gateways[gw]


def client_for(gw: str, lab: Optional[str] = None) -> GatewayClient:
    """A client for gateway ``gw`` of ``lab`` (or of the only lab that is up)."""
    return GatewayClient(_gateway(gw, lab)["control_socket"], name=gw)


def _seconds(value: Optional[float], kind: str = "dynamic") -> str:
    if value is None:
        return "permanent" if kind in ("natpmp", "pcp", "upnp") else "static"
    return f"{value:.0f}s" if value >= 10 else f"{value:.1f}s"


def mappings_table(gw: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{gw}: {plural(len(rows), 'mapping')}")
    for column, justify in (("kind", "left"), ("proto", "left"), ("internal", "left"), ("external", "left"),
                            ("remote", "left"), ("sessions", "right"), ("expires in", "right"),
                            ("pkts out", "right"), ("pkts in", "right")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        kind = row.get("kind", "dynamic")
        table.add_row(kind, row["protocol"], row["internal"], row["external"], row["remote"],
                      str(len(row.get("sessions", ()))), _seconds(row.get("expires_in"), kind),
                      str(row["packets_out"]), str(row["packets_in"]))
    return table


@app.command(rich_help_panel="Gateways")
def mappings(gw: Gw, lab: LabOpt = None, as_json: JsonOpt = False,
             watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh every second until Ctrl-C.")] = False) -> None:
    """Show a gateway's mapping table."""
    client = client_for(gw, lab)
    if as_json:
        print_json(client.mappings())
        return
    if not watch:
        console().print(mappings_table(gw, client.mappings()))
        return
    with Live(mappings_table(gw, client.mappings()), console=console(), auto_refresh=False) as live:
        try:
            while True:
                time.sleep(1)
                live.update(mappings_table(gw, client.mappings()), refresh=True)
        except KeyboardInterrupt:
            pass


@app.command(rich_help_panel="Gateways")
def events(gw: Gw, lab: LabOpt = None,
           follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream new events until Ctrl-C.")] = False,
           limit: Annotated[int, typer.Option(help="At most this many recent events.")] = 1000) -> None:
    """Print a gateway's recent events (mappings made and expired, drops) as JSON lines."""
    client = client_for(gw, lab)
    if not follow:
        for event in client.events(limit=limit):
            print(json.dumps(event))
        return
    try:
        for event in client.follow_events():
            print(json.dumps(event), flush=True)
    except KeyboardInterrupt:
        pass


@app.command("set", rich_help_panel="Gateways")
def set_(gw: Gw, assignments: Annotated[list[str], typer.Argument(help="knob=value, e.g. timeouts.udp=30", show_default=False)],
         lab: LabOpt = None) -> None:
    """Change a running gateway's policy (like a preset override)."""
    from natlab.behaviours.overrides import flatten

    policy = flatten(client_for(gw, lab).set(assignments))
    for item in assignments:
        key = item.split("=", 1)[0].strip()
        shown = {k: v for k, v in policy.items() if k == key or k.startswith(key + ".")}
        for k, v in (shown or {key: "(set)"}).items():
            print(f"{gw}: {k} = {show_value(v)}")


def policy_summary(preset: str, policy: dict[str, Any]) -> dict[str, Any]:
    """A live policy at a glance: its preset, ``EIM/APDF`` class, and knobs unlike the preset's.

    ``changed`` is None when the preset cannot be read here (a file that moved).
    """
    from natlab.behaviours.overrides import flatten
    from natlab.behaviours.presets import policy_to_dict, resolve

    try:
        base: Optional[dict[str, Any]] = flatten(policy_to_dict(resolve(preset).policy))
    except ConfigError:
        base = None
    live = flatten(policy)
    changed = None if base is None else {k: v for k, v in live.items() if base.get(k) != v}
    return {"preset": preset, "class": nat_class(policy), "mapping": policy["mapping"],
            "filtering": policy["filtering"], "changed": changed}


def knobs_text(changed: Optional[dict[str, Any]]) -> str:
    """``timeouts.udp=30 hairpinning=none``, ``-`` for none, ``?`` for unknown."""
    if changed is None:
        return "?"
    return " ".join(f"{k}={show_value(v)}" for k, v in changed.items()) or "-"


@app.command(rich_help_panel="Gateways")
def configure(gw: Gw, behaviour: Annotated[str, typer.Argument(
                  help="Preset name or path to a behaviour .yaml file.", show_default=False)],
              assignments: Annotated[Optional[list[str]], typer.Argument(
                  help="knob=value overrides, as for natlab set.", show_default=False)] = None,
              lab: LabOpt = None, as_json: JsonOpt = False) -> None:
    """Switch a running gateway to another preset (plus overrides); its mappings are flushed."""
    from natlab.behaviours.overrides import parse_assignments
    from natlab.behaviours.presets import resolve
    from natlab.topology.load import looks_like_path

    overrides = parse_assignments(assignments or [])
    if looks_like_path(behaviour):
        behaviour = str(Path(behaviour).resolve())  # the gateway's cwd is not ours
    resolve(behaviour, overrides or None)  # a clear error (did you mean) before asking
    answer = client_for(gw, lab).configure(behaviour, overrides)
    summary = policy_summary(answer["preset"], answer["policy"])
    if as_json:
        print_json({**summary, "events": answer["events"]})
        return
    print(f"{gw}: {summary['preset']} ({summary['class']}), mappings flushed "
          f"({plural(answer['events'], 'event')})")
    for knob, value in (summary["changed"] or {}).items():
        print(f"{gw}: {knob} = {show_value(value)}")


def _finite_seconds(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise typer.BadParameter(f"must be a finite number of seconds >= 0, got {value:g}")
    return value


@app.command(rich_help_panel="Gateways")
def advance(gw: Gw, seconds: Annotated[float, typer.Argument(
                help="Seconds to move the gateway's clock on (finite, >= 0).", callback=_finite_seconds)],
            lab: LabOpt = None) -> None:
    """Move a gateway's clock forward (timers expire at once)."""
    answer = client_for(gw, lab).advance(seconds)
    print(f"{gw}: clock +{seconds:g} s (offset {answer['clock_offset']:g} s), "
          f"{plural(answer['events'], 'event')}")


@app.command(rich_help_panel="Gateways")
def flush(gw: Gw, lab: LabOpt = None) -> None:
    """Forget every dynamic mapping, as a reboot would."""
    answer = client_for(gw, lab).flush()
    print(f"{gw}: flushed ({plural(answer['events'], 'event')})")


def _flat(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}.")
        else:
            rows.append((prefix + key, value))
    return rows


@app.command(rich_help_panel="Gateways")
def counters(gw: Gw, lab: LabOpt = None, as_json: JsonOpt = False,
             all_: Annotated[bool, typer.Option("--all", "-a", help="Show zero counters too.")] = False) -> None:
    """Show a gateway's counters: mappings, packets, drops by reason."""
    data = client_for(gw, lab).counters()
    if as_json:
        print_json(data)
        return
    table = Table(title=f"{gw}: counters")
    table.add_column("counter")
    table.add_column("value", justify="right")
    for key, value in _flat(data):
        if all_ or value:
            table.add_row(key, str(value))
    console().print(table)


@app.command(rich_help_panel="Gateways")
def capture(gw: Gw, lab: LabOpt = None,
            output: Annotated[Optional[Path], typer.Option("--output", "-o", help="pcap file (default: GW-TIME.pcap).")] = None,
            duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds (default: Ctrl-C).", min=0)] = None) -> None:
    """Capture both sides of a gateway to a pcap file (for Wireshark or tshark)."""
    from natlab.datapaths.nfqueue.capture import capture as run_capture

    from natlab.datapaths import registry

    entry = _gateway(gw, lab)
    netns, bpf, where = entry["netns"], "", "all interfaces"
    point = registry.hook(entry.get("datapath"), "capture_point")
    if point is not None:  # a datapath whose frames tcpdump cannot see in the gateway's namespace
        from natlab.gateway.spec import GatewaySpec

        netns, bpf = point(GatewaySpec.from_json(Path(entry["spec_path"]).read_text()))
        where = "the switch side of its veths"
    output = output or Path(f"{gw}-{datetime.now():%Y%m%d-%H%M%S}.pcap")
    print(f"capturing {gw} ({netns}, {where}) to {output}"
          + ("" if duration is not None else "; Ctrl-C stops"), file=sys.stderr)
    packets = run_capture(netns, output, duration=duration, bpf=bpf)
    print(f"{plural(packets, 'packet')} written to {output}", file=sys.stderr)
