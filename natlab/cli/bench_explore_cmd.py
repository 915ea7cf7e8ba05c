"""Command: ``natlab bench explore`` — the workbench's start-up to a usable page, beside natlab's own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from natlab.cli.bench_cmd import JsonOut, bench_app, write_json
from natlab.cli.output import console

DEFAULT_TOPOLOGY = Path(__file__).resolve().parents[1] / "data" / "topologies" / "two-homes.yaml"


@bench_app.command("explore")
def bench_explore(
    topology: Annotated[Optional[Path], typer.Argument(help="Topology to explore (default: two-homes).",
                                                       exists=True, dir_okay=False)] = None,
    runs: Annotated[int, typer.Option(min=1, max=50, help="Start-ups of each, alternated.")] = 5,
    json_out: JsonOut = None,
) -> None:
    """Seconds from `natlab explore` to a usable page (memory backend) beside `natlab --version`."""
    from natlab.bench import explore_bench

    out = console()
    with out.status("starting natlab explore") as status:
        f = explore_bench.run(topology or DEFAULT_TOPOLOGY, runs,
                              progress=lambda what: status.update(f"natlab explore: {what}"))
    write_json(json_out, "explore", f, baseline="python -m natlab --version", aim_seconds=explore_bench.AIM_SECONDS,
               workbench_s=f.workbench_s)
    table = Table(title=f"natlab explore {Path(f.topology).name}, memory backend, median of {f.runs} fresh processes")
    table.add_column("measure")
    table.add_column("seconds", justify="right")
    table.add_column("min .. max", justify="right", style="dim")
    base = f.baseline_samples
    table.add_row("natlab --version (baseline)", f"{f.baseline_s:.2f}", f"{min(base):.2f} .. {max(base):.2f}")
    table.add_row("natlab explore: URL printed", f"{f.url_s:.2f}", "")
    table.add_row("natlab explore: usable page", f"{f.usable_s:.2f}", f"{f.usable_min_s:.2f} .. {f.usable_max_s:.2f}")
    table.add_row("usable page minus baseline", f"{f.workbench_s:+.2f}", "")
    out.print(table)
    print(f"aim: a usable page within {explore_bench.AIM_SECONDS:g} s (now {f.usable_s:.2f} s)")
