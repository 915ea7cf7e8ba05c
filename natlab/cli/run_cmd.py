"""Command: ``natlab run FILE...`` — run scenario files and report.

A run in which nothing ran must not look green in CI: when every scenario was
skipped it says so on stderr, with why, and exits :data:`EXIT_NOTHING_RAN`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from natlab.cli.app import app
from natlab.cli.datapath_opt import DatapathOpt, force as force_datapath
from natlab.words import plural
from natlab.errors import ConfigError
from natlab.realisers.registry import DEFAULT

ALL = "all"
"""``--backend all``: every realiser each scenario allows."""
EXIT_PASSED, EXIT_FAILED, EXIT_NOTHING_RAN = 0, 1, 4
"""Every scenario that ran passed; a step failed or errored (or a file is invalid); all were skipped."""


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
                                              "docker, or all (every backend each scenario allows).")] = DEFAULT,
    junit: Annotated[Optional[Path], typer.Option(help="Also write a JUnit XML report here.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write a JSON report here.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every step, not only failures.")] = False,
    datapath: DatapathOpt = None,
) -> None:
    """Run scenarios. Each scenario gets its own lab, always taken down.

    \b
    Exit status:
      0  all that ran passed (skips are counted, with why, in the last line)
      1  a step failed or errored, or a file is invalid
      4  nothing ran: every scenario was skipped (not root? try --backend memory)
    """
    from natlab.scenario import load, render_text, run_scenario, write_json, write_junit

    force_datapath(datapath)
    from natlab.realisers.registry import get, names as realiser_names

    if backend != ALL:
        get(backend, among=(*realiser_names(), ALL))  # UnknownBackend, with "did you mean"
    scenarios = [load(f) for f in _files(files)]  # every file validated before any lab is made
    if not scenarios:
        raise ConfigError("no scenario files given", got=[str(f) for f in files])
    reports = []
    for scn in scenarios:
        for b in (scn.backends if backend == ALL else (backend,)):
            report = run_scenario(scn, b)
            reports.append(report)
            colour = {"passed": "green", "skipped": "yellow"}.get(report.status, "red")
            typer.secho(render_text(report, verbose=verbose), fg=colour)
    if junit:
        write_junit(reports, junit)
    if json_out:
        write_json(reports, json_out)
    typer.echo(summary_line(reports))
    raise typer.Exit(_exit_status(reports))


def summary_line(reports: list[Any]) -> str:
    """``2 passed, 3 skipped: 2 because ...; 1 because ...`` (skips grouped by cause)."""
    counts = {s: sum(r.status == s for r in reports) for s in ("passed", "failed", "error", "skipped")}
    line = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing ran"
    causes = Counter(r.skip_cause or r.reason for r in reports if r.status == "skipped")
    if len(causes) == 1:
        line += f" because {next(iter(causes))}"
    elif causes:
        line += ": " + "; ".join(f"{n} because {cause}" for cause, n in causes.most_common())
    return line


def _exit_status(reports: list[Any]) -> int:
    if any(r.status in ("failed", "error") for r in reports):
        return EXIT_FAILED
    if all(r.status == "skipped" for r in reports):
        _say_nothing_ran(reports)
        return EXIT_NOTHING_RAN
    return EXIT_PASSED


def _say_nothing_ran(reports: list[Any]) -> None:
    """The loud line on stderr: nothing ran, why, and what would make it run."""
    from natlab.realisers.registry import check

    causes = sorted({r.skip_cause or r.reason for r in reports})
    runs = plural(len(reports), "scenario run")
    typer.secho(f"natlab run: NOTHING RAN: {'the' if len(reports) == 1 else 'all'} {runs} "
                f"{'was' if len(reports) == 1 else 'were'} skipped: "
                + "; ".join(causes), fg="red", bold=True, err=True)
    unavailable = [check(b) for b in sorted({r.backend for r in reports})]
    if any(u is not None and u.needs_root for u in unavailable):
        typer.secho("hint: run as root (natlab makes network namespaces), or use --backend memory "
                    "(the in-process twin, no root)", fg="red", err=True)
    typer.secho(f"exit status {EXIT_NOTHING_RAN}: nothing ran (not a pass)", fg="red", err=True)
