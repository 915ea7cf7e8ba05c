"""Commands: ``natlab bench ...`` — figures, never pass/fail."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from natlab.cli.app import app
from natlab.cli.output import console

bench_app = typer.Typer(help="Measure natlab's speed beside a baseline in the same run.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

JsonOut = Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here, as JSON.")]


def write_json(path: Optional[Path], kind: str, figures: Any, **extra: Any) -> None:
    """The figures of one run (a dataclass), with what they were measured against."""
    if path is not None:
        data = {"bench": kind, **extra, "figures": dataclasses.asdict(figures)}
        path.write_text(json.dumps(data, indent=2) + "\n")


@bench_app.command("engine")
def bench_engine(
    flows: Annotated[int, typer.Option(help="Established flows to cycle through.")] = 1000,
    seconds: Annotated[float, typer.Option(help="Seconds per figure.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the engine's random.Random.")] = 1,
    json_out: JsonOut = None,
) -> None:
    """Engine translations/s and new mappings/s beside a bare struct-rewrite loop."""
    from natlab.bench.engine_bench import run

    f = run(flows=flows, seconds=seconds, seed=seed)
    write_json(json_out, "engine", f, baseline="bare struct rewrite", seed=seed,
               shares={"out": f.engine_out_pps / f.bare_pps, "in": f.engine_in_pps / f.bare_pps})
    table = Table(title=f"natlab engine, {f.flows} UDP flows, seed {seed} (one core, CPython)")
    table.add_column("measure")
    table.add_column("rate", justify="right")
    table.add_column("vs bare rewrite", justify="right")
    table.add_row("bare struct rewrite (baseline)", f"{f.bare_pps:,.0f} pkt/s", "100%")
    table.add_row("engine, established, outbound", f"{f.engine_out_pps:,.0f} pkt/s", f"{f.engine_out_pps / f.bare_pps:.0%}")
    table.add_row("engine, established, inbound", f"{f.engine_in_pps:,.0f} pkt/s", f"{f.engine_in_pps / f.bare_pps:.0%}")
    table.add_row("engine, new mappings", f"{f.new_mappings_per_s:,.0f} /s", "")
    table.add_row("memory per mapping", f"{f.bytes_per_mapping:,.0f} bytes", "")
    console().print(table)
    print("aims: established >= 50% of bare rewrite; >= 20,000 new mappings/s")
