"""Command: ``natlab matrix`` — UDP hole punching between every pair of behaviours."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from natlab.cli.app import app
from natlab.cli.output import console
from natlab.cli.datapath_opt import DatapathOpt, force as force_datapath
from natlab.errors import ConfigError



@app.command()
def matrix(
    behaviours: Annotated[str, typer.Option(help="Comma-separated presets (default: the four classic cones).")] = "",
    seed: Annotated[int, typer.Option(help="Seed of every engine's random.Random.")] = 0,
    rounds: Annotated[int, typer.Option(help="memory: punch rounds (0.2 s apart), as ICE retries.")] = 10,
    backend: Annotated[str, typer.Option(help="Where to run: memory (in-process twin) or netns (a real lab, root).")] = "memory",
    timeout: Annotated[float, typer.Option(help="netns: seconds each side has to get through.")] = 3.0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON.")] = None,
    svg_out: Annotated[Optional[Path], typer.Option("--svg", "--image", help="Also write an SVG heat map.")] = None,
    side_a: Annotated[Optional[str], typer.Option(help="netns: your app on alice's side instead of the built-in peer; "
                                                  "placeholders {server} {session} {self} {peer} {sport} {peer_public} ...")] = None,
    side_b: Annotated[Optional[str], typer.Option(help="netns: your app on bob's side (same placeholders).")] = None,
    server_cmd: Annotated[Optional[str], typer.Option(help="netns: your server on the public host "
                                                      "(default: the built-in rendezvous on {server}).")] = None,
    success: Annotated[Optional[str], typer.Option(help="A regex each side's output must match (besides exit 0).")] = None,
    port_mapping: Annotated[Optional[str], typer.Option(
        help="Turn natpmp, pcp or upnp on at both NATs; each peer maps its port first "
             "and offers the mapped endpoint too (netns: natlab's client in each namespace).")] = None,
    datapath: DatapathOpt = None,
) -> None:
    """Hole punching between every pair of presets in a two-homes topology, with a public rendezvous."""
    force_datapath(datapath)
    from natlab.matrix.memory import CLASSIC, EXPECTED_CLASSIC
    from natlab.behaviours.presets import load_preset

    from natlab.realisers.registry import get, names as realiser_names

    realiser = get(backend, among=realiser_names(runs_matrix=True), what="matrix backend")
    names = tuple(n.strip() for n in behaviours.split(",") if n.strip()) or CLASSIC
    for name in names:
        load_preset(name)  # a clear error naming the known presets
    user_app = _user_app(realiser, side_a, side_b, server_cmd, success)
    if svg_out:
        from natlab.matrix.heatmap import check_svg_path

        check_svg_path(svg_out)  # before the run, not after it
    detail: dict[tuple[str, str], Any] = {}
    from natlab.matrix.memory import EXPECTED_MAPPED, PORT_MAPPING

    if port_mapping is not None and port_mapping not in PORT_MAPPING:
        raise ConfigError("--port-mapping takes natpmp, pcp or upnp", got=port_mapping,
                          hint="natlab matrix --port-mapping pcp")
    if not realiser.runs_programs:  # the in-process twin: punch rounds on a manual clock
        from natlab.matrix.memory import run_matrix

        results = run_matrix(names, seed=seed, rounds=rounds, port_mapping=port_mapping)
        how = f"in memory (seed {seed}, {rounds} rounds" + (f", {port_mapping} port mapping)" if port_mapping else ")")
    else:
        from natlab.matrix.lab import run_lab_matrix

        progress_out = Console(stderr=True)
        run = run_lab_matrix(names, seed, app=user_app, timeout=timeout, port_mapping=port_mapping,
                             progress=lambda p: progress_out.print(
            f"  {p.alice_behaviour} / {p.bob_behaviour}: {'ok' if p.ok else 'fail'}", highlight=False))
        results, detail = run.results, {key: pair.to_dict() for key, pair in run.pairs.items()}
        how = (f"netns lab (seed {seed}, {run.seconds:.1f} s{', user app' if user_app else ''}"
               + (f", {port_mapping} port mapping)" if port_mapping else ")"))
    expected = EXPECTED_MAPPED if port_mapping else EXPECTED_CLASSIC
    console().print(_table(names, results, expected, how))
    mismatches = _mismatches(results, expected)
    for a, b in mismatches:
        typer.echo(f"differs from RFC 4787 theory: alice {a} / bob {b}: "
                   f"{'ok' if results[(a, b)] else 'fail'}, expected {'ok' if expected[(a, b)] else 'fail'}")
    if json_out:
        data = {"seed": seed, "rounds": rounds, "backend": backend, "timeout": timeout, "port_mapping": port_mapping,
                "app": None if user_app is None else vars(user_app),
                "results": [{"alice": a, "bob": b, "ok": ok, **({"detail": detail[(a, b)]} if (a, b) in detail else {})}
                            for (a, b), ok in results.items()],
                "mismatches": [{"alice": a, "bob": b} for a, b in mismatches]}
        json_out.write_text(json.dumps(data, indent=2) + "\n")
    if svg_out:
        from natlab.matrix.heatmap import write_svg

        write_svg(svg_out, results, seed=seed, backend=backend, expected=expected)


def _user_app(realiser: Any, side_a: Optional[str], side_b: Optional[str], server_cmd: Optional[str],
              success: Optional[str]) -> Any:
    given = [opt for opt, value in (("--side-a", side_a), ("--side-b", side_b), ("--server-cmd", server_cmd),
                                    ("--success", success)) if value is not None]
    if not given:
        return None
    if not realiser.runs_programs:
        from natlab.realisers.registry import DEFAULT

        raise ConfigError(f"a user app runs only on the {DEFAULT} backend", got=given,
                          hint=f"add --backend {DEFAULT} (as root); the {realiser.name} backend has no processes")
    if side_a is None or side_b is None:
        raise ConfigError("a user app needs a command for both sides", got=given,
                          hint="give --side-a CMD and --side-b CMD")
    from natlab.matrix.lab import UserApp

    return UserApp(side_a, side_b, server_cmd, success)


def _mismatches(results: dict[tuple[str, str], bool],
                expected: Optional[dict[tuple[str, str], bool]]) -> list[tuple[str, str]]:
    if expected is None:
        return []
    return [key for key, ok in results.items() if key in expected and expected[key] != ok]


def _table(names: tuple[str, ...], results: dict[tuple[str, str], bool],
           expected: Optional[dict[tuple[str, str], bool]], how: str) -> Table:
    table = Table(title=f"UDP hole punching, {how}; rows alice, columns bob")
    table.add_column("alice \\ bob")
    for name in names:
        table.add_column(name, justify="center")
    for a in names:
        cells = []
        for b in names:
            ok = results[(a, b)]
            surprise = expected is not None and (a, b) in expected and expected[(a, b)] != ok
            cells.append(("[green]ok[/]" if ok else "[red]fail[/]") + (" [yellow](!theory)[/]" if surprise else ""))
        table.add_row(a, *cells)
    return table
