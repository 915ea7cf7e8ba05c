"""Command: ``natlab matrix`` — UDP hole punching between every pair of behaviours."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from natlab.cli.app import app
from natlab.errors import ConfigError


@app.command()
def matrix(
    behaviours: Annotated[str, typer.Option(help="Comma-separated presets (default: the four classic cones).")] = "",
    seed: Annotated[int, typer.Option(help="Seed of every engine's random.Random.")] = 0,
    rounds: Annotated[int, typer.Option(help="Punch rounds (0.2 s apart), as ICE retries.")] = 10,
    backend: Annotated[str, typer.Option(help="Where to run: memory (netns comes with the scenario runner).")] = "memory",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON.")] = None,
) -> None:
    """Hole punching between every pair of presets in a two-homes topology, with a public rendezvous."""
    from natlab.matrix import CLASSIC, EXPECTED_CLASSIC, run_matrix
    from natlab.presets import load_preset

    if backend != "memory":
        raise ConfigError("unknown or unavailable matrix backend", got=backend,
                          hint="use --backend memory; the netns matrix comes with the scenario runner")
    names = tuple(n.strip() for n in behaviours.split(",") if n.strip()) or CLASSIC
    for name in names:
        load_preset(name)  # a clear error naming the known presets
    results = run_matrix(names, seed=seed, rounds=rounds)
    table = Table(title=f"UDP hole punching, in memory (seed {seed}, {rounds} rounds); rows alice, columns bob")
    table.add_column("alice \\ bob")
    for name in names:
        table.add_column(name, justify="center")
    for a in names:
        cells = []
        for b in names:
            ok = results[(a, b)]
            surprise = (a, b) in EXPECTED_CLASSIC and EXPECTED_CLASSIC[(a, b)] != ok
            cells.append(("[green]ok[/]" if ok else "[red]fail[/]") + (" [yellow](!theory)[/]" if surprise else ""))
        table.add_row(a, *cells)
    Console().print(table)
    if json_out:
        data = {"seed": seed, "rounds": rounds, "backend": backend,
                "results": [{"alice": a, "bob": b, "ok": ok} for (a, b), ok in results.items()]}
        json_out.write_text(json.dumps(data, indent=2) + "\n")
