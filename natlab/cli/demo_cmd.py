"""Command: ``natlab demo`` — two homes behind two NATs, UDP through both, a hole punch."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from natlab.cli import output
from natlab.cli.app import app
from natlab.realisers.netns.procs import python_module
from natlab.shipped import shipped_file

SERVER = "203.0.113.100:3478"


def _probe(lab: Any, host: str, *args: str, timeout: float = 10.0) -> tuple[int, list[dict]]:
    done = lab.exec(host, [*python_module("natlab.hostprogs.probe"), *args],
                    capture_output=True, text=True, timeout=timeout)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="Leave the lab up afterwards (natlab down two-homes).")] = False,
    topology: Annotated[Optional[Path], typer.Option(help="Another two-homes-like topology.")] = None,
) -> None:
    """Bring up two homes behind two NATs, exchange UDP through both, try a hole punch."""
    from natlab.gateway.client import GatewayClient
    from natlab.lab import up

    console = output.console()
    path = topology or shipped_file("topologies", "two-homes.yaml")
    console.print(f"[bold]natlab demo[/]: bringing up {path}")
    lab = up(path, progress=lambda msg: console.print(f"  {msg}", style="dim"))
    try:
        reflector = lab.popen("server", [*python_module("natlab.hostprogs.probe"), "udp-reflect",
                                         "--port", "3478", "--count", "2", "--timeout", "15"],
                              stdout=subprocess.PIPE, text=True)
        reflector.stdout.readline()  # "listening"
        seen = {}
        table = Table(title=f"UDP to the server {SERVER}, through each NAT")
        for column in ("host", "sent from", "NAT", "server saw", "reply"):
            table.add_column(column)
        for host, gw in (("alice", "nat-a"), ("bob", "nat-b")):
            code, out = _probe(lab, host, "udp-send", "--to", SERVER, "--sport", "40000",
                               "--message", f"hello from {host}")
            reply = out[-1] if out else {}
            seen[host] = reply.get("data", "").removeprefix("seen ")
            behaviour = lab.state.gateways[gw]["behaviour"]
            table.add_row(host, f"{lab.host_address(host)}:40000", f"{gw} ({behaviour})",
                          seen[host] or "-", "yes" if code == 0 else "no (timeout)")
        reflector.wait(timeout=15)
        console.print(table)
        for gw in ("nat-a", "nat-b"):
            rows = GatewayClient(lab.state.gateways[gw]["control_socket"], name=gw).mappings()
            for m in rows:
                console.print(f"  {gw}: {m['protocol']} {m['internal']} -> {m['external']} (remote {m['remote']})")
        _punch(lab, console, seen)
    finally:
        if keep:
            console.print(f"lab {lab.name} left up: natlab exec alice -- sh; natlab down {lab.name}")
        else:
            lab.down()
            console.print(f"lab {lab.name} is down")


def _punch(lab: Any, console: Console, seen: dict[str, str]) -> None:
    """Both peers send to the endpoint the server saw for the other, at once."""
    if not all(seen.values()):
        return
    console.print(f"hole punch: alice -> {seen['bob']}, bob -> {seen['alice']} (3 s)")
    procs = {
        host: lab.popen(host, [*python_module("natlab.hostprogs.probe"), "udp-punch", "--sport", "40000",
                               "--peer", seen[peer], "--timeout", "3"], stdout=subprocess.PIPE, text=True)
        for host, peer in (("alice", "bob"), ("bob", "alice"))
    }
    results = {host: proc.wait(timeout=10) == 0 for host, proc in procs.items()}
    if all(results.values()):
        console.print("[green]hole punch succeeded[/]: alice and bob talk directly")
    else:
        console.print("[yellow]hole punch failed[/], as RFC 4787 predicts here: nat-b is symmetric "
                      "(a new external port per destination), so alice aims at a port bob's NAT did not "
                      "open for her, and nat-a filters bob's new port (address-and-port-dependent). "
                      "Peers behind such a pair need a relay (TURN). See: natlab explain symmetric")
