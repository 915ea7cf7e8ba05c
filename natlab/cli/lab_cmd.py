"""Commands: up, down, status, exec, shell, hosts.

A node's name is often enough: with several labs up, ``exec``/``shell`` find the
one lab that has it (:func:`natlab.realisers.netns.state.resolve_node`); ``--lab`` picks one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from natlab.cli.app import app
from natlab.cli.gateway_cmd import knobs_text, policy_summary
from natlab.cli.datapath_opt import DatapathOpt, force as force_datapath
from natlab.cli.output import console, print_json
from natlab.errors import ConfigError, ControlError, LabNotFound
from natlab.realisers.registry import DEFAULT, of_state
from natlab.realisers.netns import build as runner
from natlab.realisers.netns.state import LabState, list_labs, resolve_lab, resolve_node
from natlab.words import plural

LabOption = Annotated[Optional[str], typer.Option("--lab", "-l", help="lab name (default: the only one up)")]
LabArg = Annotated[Optional[str], typer.Argument(help="lab name (or --lab)", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LIVE_TIMEOUT = 2.0
"""Seconds ``status`` waits for each gateway's answer."""


def _one_lab(positional: Optional[str], option: Optional[str]) -> Optional[str]:
    if positional and option and positional != option:
        raise ConfigError("two different labs named", got=f"{positional}, --lab {option}",
                          hint="name the lab once")
    return positional or option


@app.command()
def up(
    file: Annotated[Path, typer.Argument(help="topology YAML file", exists=True, dir_okay=False)],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print nothing on success")] = False,
    backend: Annotated[Optional[str], typer.Option(
        "--backend", "-b", help="netns or docker (default: the file's backend key, else netns)")] = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", "-n", help="lab name instead of the file's name: (the same file up twice)")] = None,
    datapath: DatapathOpt = None,
) -> None:
    """Bring a topology up: namespaces, bridges, gateways, hosts."""
    from natlab.topology import load

    force_datapath(datapath)
    topo = load(file)
    if name is not None:
        topo = runner.renamed(topo, name)
    if quiet:
        runner.up(topo, backend=backend)
        return
    out = console()
    with out.status(f"bringing up {topo.name}") as status:
        state = runner.up(topo, lambda step: status.update(f"{topo.name}: {step}"), backend=backend)
    out.print(f"lab [bold]{state.name}[/] is up "
              f"(seed {topo.seed}; natlab down {state.name} removes it)")
    _print_lab(_lab_data(state))


@app.command()
def down(
    lab: LabArg = None,
    lab_opt: LabOption = None,
    all_labs: Annotated[bool, typer.Option("--all", help="every lab, including half-built")] = False,
) -> None:
    """Take a lab down: stop its processes, delete its namespaces and run directory."""
    if all_labs:
        removed = runner.down_all()
        console().print(f"removed {plural(len(removed), 'lab')}: {', '.join(removed) or '-'}")
        return
    name = _one_lab(lab, lab_opt)
    name = name if name is not None else resolve_lab(None).name
    runner.down(name, must_exist=True)
    console().print(f"lab [bold]{name}[/] is down")


@app.command()
def status(lab: LabArg = None, lab_opt: LabOption = None, as_json: JsonOpt = False) -> None:
    """Labs that are up, their hosts and gateways with their live policy (a dead gateway: DEAD)."""
    lab = _one_lab(lab, lab_opt)
    names = [lab] if lab else list_labs()
    labs: list[dict[str, Any]] = []
    for name in names:
        try:
            state = LabState.load(name)
        except LabNotFound:
            if lab:
                raise
            labs.append({"name": name, "phase": "no state file"})
            continue
        labs.append(_lab_data(state))
    if as_json:
        print_json(labs)
        return
    out = console()
    if not labs:
        out.print("no lab is up (natlab up FILE)")
    for data in labs:
        if data["phase"] == "no state file":
            out.print(f"lab [bold]{data['name']}[/]: no state file (natlab down {data['name']} cleans up)")
            continue
        phase = "" if data["phase"] == "up" else f" [yellow]({data['phase']})[/]"
        out.print(f"lab [bold]{data['name']}[/]{phase} from {data['file'] or '-'}"
                  + ("" if data["backend"] == DEFAULT else f" ({data['backend']})"))
        _print_lab(data)


@app.command("exec")
def exec_(
    host: Annotated[str, typer.Argument(help="host, gateway or router")],
    cmd: Annotated[list[str], typer.Argument(help="command and arguments (after --)")],
    lab: LabOption = None,
) -> None:
    """Run a command in a node's namespace (docker labs: in its container); its exit code is natlab's."""
    state = resolve_node(host, lab)
    argv = of_state(state).exec_argv(state, host, cmd, tty=sys.stdin.isatty() and sys.stdout.isatty())
    raise typer.Exit(subprocess.run(argv).returncode)


@app.command()
def shell(host: Annotated[str, typer.Argument(help="host, gateway or router")],
          lab: LabOption = None) -> None:
    """An interactive shell in a node's namespace (docker labs: in its container)."""
    state = resolve_node(host, lab)
    argv, env = of_state(state).shell(state, host, tty=sys.stdin.isatty())
    raise typer.Exit(subprocess.run(argv, env=env).returncode)


@app.command()
def hosts(lab: LabOption = None, as_json: JsonOpt = False) -> None:
    """Hosts of a lab and their addresses, one per line (for scripts)."""
    state = resolve_lab(lab)
    if as_json:
        print_json({name: {"addresses": host["addresses"], "network": host["network"],
                           "netns": host["netns"]} for name, host in state.hosts.items()})
        return
    for name, host in state.hosts.items():
        typer.echo(f"{name} {' '.join(host['addresses'])}")


# --- what status shows -------------------------------------------------------------

def _lab_data(state: LabState) -> dict[str, Any]:
    """A lab as plain data: what ``status --json`` prints and the tables show."""
    hosts = {name: {"network": h["network"], "addresses": h["addresses"],
                    "gateway": state.networks.get(h["network"], {}).get("gateway")}
             for name, h in state.hosts.items()}
    for name, extra in of_state(state).host_extras(state).items():
        hosts[name].update(extra)
    gateways = {}
    for name, gw in state.gateways.items():
        answer = _live_status(name, gw)
        gateways[name] = {"behaviour": gw["behaviour"], "inside": gw["inside"], "address": gw["address"],
                          "outside": gw["outside"], "pool": gw["pool"], "pid": gw.get("pid"),
                          "process": _process(gw),
                          "live": policy_summary(answer["preset"], answer["policy"]) if answer else None,
                          "datapath": (answer.get("datapath") if answer else None) or gw.get("datapath"),
                          "queue": queue_health(answer) if answer else None}
    return {"name": state.name, "phase": state.phase, "file": state.file, "backend": state.backend,
            "hosts": hosts, "gateways": gateways,
            "routers": {name: r["addresses"] for name, r in state.routers.items()}}


def _process(gw: dict) -> str:
    if gw.get("pid") is None:
        return "stub" if runner.stub_gateways() or gw.get("spec_path") is None else "not started"
    return "running" if runner.gateway_alive(gw) else "dead"


def _live_status(name: str, gw: dict) -> Optional[dict[str, Any]]:
    """The gateway's own ``status`` answer (None: it does not answer)."""
    from natlab.gateway.client import GatewayClient

    if not gw.get("control_socket"):
        return None
    try:
        answer = GatewayClient(gw["control_socket"], name=name, timeout=LIVE_TIMEOUT).status()
    except ControlError:
        return None
    return answer


def queue_health(status: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The watchdog's state, packets waiting, and packets the kernel dropped (None: not reported)."""
    own = status.get("counters", {}).get("gateway", {})
    watchdog = own.get("watchdog")
    if watchdog is None:
        return None
    dropped = sum(q.get("queue_dropped", 0) + q.get("user_dropped", 0) for q in own.get("queue", {}).values())
    return {"state": watchdog["state"], "waiting": watchdog["backlog"], "kernel_dropped": dropped}


def _queue_cell(health: Optional[dict[str, Any]]) -> str:
    """``ok``; ``BUSY (n waiting)``, ``STALLED (n waiting)``; plus what the kernel dropped."""
    if health is None:
        return "-"
    colour = {"ok": "", "busy": "yellow", "stalled": "red"}.get(health["state"], "red")
    text = health["state"] if health["state"] == "ok" else f"{health['state'].upper()} ({health['waiting']} waiting)"
    if colour:
        text = f"[{colour}]{text}[/]"
    if health["kernel_dropped"]:
        text += f", {health['kernel_dropped']} dropped in kernel"
    return text


def _print_lab(data: dict[str, Any]) -> None:
    out = console()
    out.print(_hosts_table(data))
    if data["gateways"]:
        out.print(_gateways_table(data))
    if data["routers"]:
        r_table = Table(title="routers", title_justify="left")
        r_table.add_column("name")
        r_table.add_column("addresses")
        for name, addresses in data["routers"].items():
            r_table.add_row(name, " ".join(f"{n}={a}" for n, a in addresses.items()))
        out.print(r_table)


def _hosts_table(data: dict[str, Any]) -> Table:
    extras = any("app" in host for host in data["hosts"].values())  # the docker realiser's columns
    table = Table(title="hosts", title_justify="left")
    for col in ("name", "network", "addresses", "gateway", *(("image", "app") if extras else ())):
        table.add_column(col)
    for name, host in data["hosts"].items():
        extra = (host.get("image", "-"), _app_cell(host.get("app", "-"))) if extras else ()
        table.add_row(name, host["network"], " ".join(host["addresses"]), host["gateway"] or "-", *extra)
    return table


def _app_cell(app_state: str) -> str:
    return app_state if app_state in ("running", "-") else f"[red]{app_state}[/]"


def _gateways_table(data: dict[str, Any]) -> Table:
    table = Table(title="gateways", title_justify="left")
    for col in ("name", "behaviour", "class", "changed knobs", "inside", "outside", "pool", "datapath", "pid",
                "queue"):
        table.add_column(col)
    for name, gw in data["gateways"].items():
        live = gw["live"]
        behaviour = live["preset"] if live else gw["behaviour"]
        if live and live["preset"] != gw["behaviour"]:
            behaviour += f" [dim](was {gw['behaviour']})[/]"
        table.add_row(name, behaviour, live["class"] if live else "-",
                      knobs_text(live["changed"]) if live else "-",
                      f"{gw['inside']} ({gw['address']})", gw["outside"], " ".join(gw["pool"]),
                      gw["datapath"] or "-", _pid_cell(gw), _queue_cell(gw["queue"]))
    return table


def _pid_cell(gw: dict) -> str:
    process = gw["process"]
    if process in ("stub", "not started"):
        return "- (stub)" if process == "stub" else "-"
    return str(gw["pid"]) if process == "running" else f"[red]DEAD[/] ({gw['pid']})"
