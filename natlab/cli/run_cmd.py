"""Command: ``natlab run FILE...`` — run scenario files and report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from natlab.cli.app import app
from natlab.errors import ConfigError

BACKEND_CHOICES = ("netns", "memory", "docker", "all")


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml")))
        else:
            out.append(p)
    return out


@app.command()
def run(
    files: Annotated[list[Path], typer.Argument(help="Scenario files (or folders of them).")],
    backend: Annotated[str, typer.Option(help="netns (real lab, root), memory (in-process twin, no root), "
                                              "docker, or all (every backend each scenario allows).")] = "netns",
    junit: Annotated[Optional[Path], typer.Option(help="Also write a JUnit XML report here.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write a JSON report here.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every step, not only failures.")] = False,
) -> None:
    """Run scenarios; exit 1 if any step failed. Each scenario gets its own lab, always taken down."""
    from natlab.scenario import load, render_text, run_scenario, write_json, write_junit

    if backend not in BACKEND_CHOICES:
        raise ConfigError("unknown backend", got=backend, hint="one of " + ", ".join(BACKEND_CHOICES))
    scenarios = [load(f) for f in _files(files)]  # every file validated before any lab is made
    if not scenarios:
        raise ConfigError("no scenario files given", got=[str(f) for f in files])
    reports = []
    for scn in scenarios:
        for b in (scn.backends if backend == "all" else (backend,)):
            report = run_scenario(scn, b)
            reports.append(report)
            colour = {"passed": "green", "skipped": "yellow"}.get(report.status, "red")
            typer.secho(render_text(report, verbose=verbose), fg=colour)
    if junit:
        write_junit(reports, junit)
    if json_out:
        write_json(reports, json_out)
    counts = {s: sum(r.status == s for r in reports) for s in ("passed", "failed", "error", "skipped")}
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing ran")
    if counts["failed"] or counts["error"]:
        raise typer.Exit(1)
