"""``natlab explore``: a local web workbench over a lab (the in-memory twin by default).

Thin: it builds a :class:`~natlab.explore.session.Workbench`, starts the server
(:mod:`natlab.explore.server`) on 127.0.0.1 and prints the URL with its token.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import webbrowser
from pathlib import Path
from typing import Annotated, Optional

import typer

from natlab.cli.app import app
from natlab.errors import ConfigError

def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _has_display() -> bool:
    """A graphical session to open a browser in (else webbrowser may start a text browser here)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@app.command("explore")
def explore_cmd(
    topology: Annotated[Optional[Path], typer.Argument(help="Topology YAML file to explore (with --lab: the "
                                                            "lab's file, if its state names none).")] = None,
    lab: Annotated[Optional[str], typer.Option("--lab", "-l", help="Attach to this running netns or Docker lab "
                                                                   "(root); it stays up on exit.")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", "-b", help="memory (default), or netns / docker "
                                                                           "(root: a real lab, taken down on exit).")]
    = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed (default: the topology's).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (and that browsers use); anything but "
                                               "loopback exposes the lab.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port (0: any free one).")] = 0,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False,
) -> None:
    """A web workbench: topology, gateways' knobs and tables, probes with their walk, hole punching,
    time travel; what you do is recorded and saved as a scenario that `natlab run` passes."""
    from natlab.explore.backend import BACKENDS
    from natlab.realisers import registry

    if lab is not None and backend is not None:
        raise ConfigError("--lab drives the lab on the backend it was made with", got=f"--backend {backend}",
                          hint=f"natlab explore --lab {lab}")
    if lab is not None and seed is not None:
        raise ConfigError("a running lab keeps its seed", got=f"--seed {seed}", hint=f"natlab explore --lab {lab}")
    backend = backend or "memory"
    realiser = registry.get(backend, among=BACKENDS)  # an unknown name: "did you mean", the known ones
    if topology is None and lab is None:
        raise ConfigError("name a topology file to explore, or a running lab", hint="natlab explore "
                          "topologies/two-homes.yaml, or natlab explore --lab NAME (natlab status lists them)")
    if not 0 <= port <= 65535:
        raise ConfigError("port out of range", got=port, hint="0..65535")
    try:
        from natlab.explore.server import start
        from natlab.explore.session import Workbench
    except ImportError as err:
        raise ConfigError("natlab explore needs its server libraries", got=err.name,
                          hint="pip install 'natlab[explore]'") from None
    if lab is None and realiser.makes_labs:
        typer.echo(f"bringing up {topology} on the {backend} backend ...", err=True)
    wb = Workbench(topology, seed=seed, backend_name=backend, lab=lab)
    try:
        running, sock = start(wb, host, port, thread=False)
    except OSError as err:
        wb.close()
        raise ConfigError("cannot listen", got=f"{host}:{port}", hint=err.strerror) from None
    if not _loopback(host):
        typer.echo(f"warning: listening on {host}: anyone who can reach it and has the token can change the lab",
                   err=True)
    how = "attached to the running lab; it stays up on exit" if lab is not None else (
        "taken down on exit" if realiser.makes_labs else f"seed {wb.seed}")
    typer.echo(f"natlab explore: {wb.topo.name} on the {wb.driver.backend} backend ({how})")
    typer.echo(f"  {running.url}")
    typer.echo("  Ctrl-C stops it.")
    sys.stdout.flush()
    if not no_browser and _has_display():
        try:
            webbrowser.open(running.url)
        except webbrowser.Error:
            pass  # no browser here: the URL is printed
    try:
        running.server.run(sockets=[sock])
    finally:
        wb.close()
