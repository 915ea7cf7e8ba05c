"""Commands: up, down, status, exec, shell, hosts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from natlab.cli.app import app
from natlab.errors import LabNotFound
from natlab.lab import lab as lablib
from natlab.lab import runner
from natlab.lab.state import LabState, list_labs, resolve_lab

console = Console()
LabOption = Annotated[Optional[str], typer.Option("--lab", "-l", help="lab name (default: the only one up)")]


@app.command()
def up(
    file: Annotated[Path, typer.Argument(help="topology YAML file", exists=True, dir_okay=False)],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print nothing on success")] = False,
    backend: Annotated[Optional[str], typer.Option(
        "--backend", "-b", help="netns or docker (default: the file's backend key, else netns)")] = None,
) -> None:
    """Bring a topology up: namespaces, bridges, gateways, hosts."""
    from natlab.topology import load

    topo = load(file)
    if quiet:
        state = runner.up(topo, backend=backend)
        return
    with console.status(f"bringing up {topo.name}") as status:
        state = runner.up(topo, lambda step: status.update(f"{topo.name}: {step}"), backend=backend)
    console.print(f"lab [bold]{state.name}[/] is up "
                  f"(seed {topo.seed}; natlab down {state.name} removes it)")
    _print_lab(state)


@app.command()
def down(
    lab: Annotated[Optional[str], typer.Argument(help="lab name (default: the only one up)")] = None,
    all_labs: Annotated[bool, typer.Option("--all", help="every lab, including half-built")] = False,
) -> None:
    """Take a lab down: stop its processes, delete its namespaces and run directory."""
    if all_labs:
        removed = runner.down_all()
        console.print(f"removed {len(removed)} lab(s): {', '.join(removed) or '-'}")
        return
    name = lab if lab is not None else resolve_lab(None).name
    runner.down(name)
    console.print(f"lab [bold]{name}[/] is down")


@app.command()
def status(lab: Annotated[Optional[str], typer.Argument(help="lab name (default: all)")] = None) -> None:
    """Labs that are up, their hosts and gateways (a dead gateway shows as DEAD)."""
    names = [lab] if lab else list_labs()
    if not names:
        console.print("no lab is up (natlab up FILE)")
        return
    for name in names:
        try:
            state = LabState.load(name)
        except LabNotFound:
            if lab:
                raise
            console.print(f"lab [bold]{name}[/]: no state file (natlab down {name} cleans up)")
            continue
        phase = "" if state.phase == "up" else f" [yellow]({state.phase})[/]"
        console.print(f"lab [bold]{name}[/]{phase} from {state.file or '-'}")
        _print_lab(state)


@app.command("exec")
def exec_(
    host: Annotated[str, typer.Argument(help="host, gateway or router")],
    cmd: Annotated[list[str], typer.Argument(help="command and arguments (after --)")],
    lab: LabOption = None,
) -> None:
    """Run a command in a node's namespace (docker labs: in its container); its exit code is natlab's."""
    state = resolve_lab(lab)
    if state.backend == "docker":
        argv = lablib.Lab(state).container_argv(host, cmd, tty=sys.stdin.isatty() and sys.stdout.isatty())
    else:
        argv = lablib.Lab(state).argv(host, cmd)
    raise typer.Exit(subprocess.run(argv).returncode)


@app.command()
def shell(host: Annotated[str, typer.Argument(help="host, gateway or router")],
          lab: LabOption = None) -> None:
    """An interactive shell in a node's namespace (docker labs: in its container)."""
    state = resolve_lab(lab)
    if state.backend == "docker":
        from natlab.lab import docker

        env = {"PS1": f"[{state.name}:{host}] # ", "NATLAB_LAB": state.name, "NATLAB_NODE": host}
        argv = docker.exec_argv(state, host, ["sh", "-i"], tty=sys.stdin.isatty(), env=env)
        raise typer.Exit(subprocess.run(argv).returncode)
    sh = os.environ.get("SHELL") or "/bin/sh"
    argv = [sh, "--norc", "-i"] if Path(sh).name == "bash" else [sh, "-i"]
    env = {**os.environ, "PS1": f"[{state.name}:{host}] \\w\\$ ", "NATLAB_LAB": state.name,
           "NATLAB_NODE": host}
    done = subprocess.run(lablib.Lab(state).argv(host, argv), env=env)
    raise typer.Exit(done.returncode)


@app.command()
def hosts(lab: LabOption = None) -> None:
    """Hosts of a lab and their addresses, one per line (for scripts)."""
    state = resolve_lab(lab)
    for name, host in state.hosts.items():
        typer.echo(f"{name} {' '.join(host['addresses'])}")


def _print_lab(state: LabState) -> None:
    hosts_table = Table(title="hosts", title_justify="left")
    for col in ("name", "network", "addresses", "gateway"):
        hosts_table.add_column(col)
    for name, host in state.hosts.items():
        gw = state.networks.get(host["network"], {}).get("gateway") or "-"
        hosts_table.add_row(name, host["network"], " ".join(host["addresses"]), gw)
    console.print(hosts_table)
    if state.gateways:
        gw_table = Table(title="gateways", title_justify="left")
        for col in ("name", "behaviour", "inside", "outside", "pool", "pid"):
            gw_table.add_column(col)
        for name, gw in state.gateways.items():
            gw_table.add_row(name, gw["behaviour"], f"{gw['inside']} ({gw['address']})",
                             gw["outside"], " ".join(gw["pool"]), _pid_cell(gw))
        console.print(gw_table)
    if state.routers:
        r_table = Table(title="routers", title_justify="left")
        r_table.add_column("name")
        r_table.add_column("addresses")
        for name, r in state.routers.items():
            r_table.add_row(name, " ".join(f"{n}={a}" for n, a in r["addresses"].items()))
        console.print(r_table)


def _pid_cell(gw: dict) -> str:
    if gw.get("pid") is None:
        return "- (stub)" if runner.stub_gateways() or gw.get("spec_path") is None else "-"
    return str(gw["pid"]) if runner.gateway_alive(gw) else f"[red]DEAD[/] ({gw['pid']})"
