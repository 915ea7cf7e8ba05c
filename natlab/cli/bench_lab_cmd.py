"""Command: ``natlab bench nat`` — kernel NAT, bare NFQUEUE and natlab on one lab, side by side."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from natlab.cli.bench_cmd import JsonOut, bench_app, write_json
from natlab.cli.output import console

AIM_PPS_SHARE = 0.5
AIM_TCP_MBPS = 1000.0


def _pps(value: Optional[float]) -> str:
    return "failed" if value is None else f"{value:,.0f}"


def _share(value: Optional[float], base: Optional[float]) -> str:
    return "" if value is None or not base else f"{value / base:.0%}"


@bench_app.command("nat")
def bench_nat(
    seconds: Annotated[float, typer.Option(min=0.5, max=60, help="Seconds per figure (8 figures).")] = 3.0,
    behaviour: Annotated[str, typer.Option(help="Preset the natlab gateway runs.")] = "rfc-recommended",
    python_tools: Annotated[bool, typer.Option(
        "--python-tools", help="Use the Python senders/receivers even when iperf3 is installed.")] = False,
    json_out: JsonOut = None,
) -> None:
    """UDP packets/s and TCP Mbit/s through kernel NAT, a bare NFQUEUE pass-through and natlab."""
    from natlab.bench import lab_bench

    out = console()
    with out.status("bringing the lab up") as status:
        report = lab_bench.run(seconds=seconds, behaviour=behaviour,
                               progress=lambda what: status.update(f"measuring: {what}"),
                               use_iperf3=False if python_tools else None)
    bare = report.figures(lab_bench.BARE)
    write_json(json_out, "nat", report, baseline=[lab_bench.KERNEL, lab_bench.BARE])
    table = Table(title=f"inside host -> gateway -> outside host, {report.seconds:g} s per figure, "
                        f"tool: {report.tool}, natlab preset: {report.behaviour}")
    table.add_column("path")
    table.add_column("UDP pkt/s received", justify="right")
    table.add_column("(sent)", justify="right", style="dim")
    table.add_column("TCP Mbit/s", justify="right")
    table.add_column("UDP vs bare NFQUEUE", justify="right")
    table.add_column("TCP vs bare NFQUEUE", justify="right")
    notes = any(f.note for f in report.paths)
    if notes:
        table.add_column("note", style="dim")
    for f in report.paths:
        tcp = "failed" if f.tcp_mbps is None else f"{f.tcp_mbps:,.0f}"
        row = [f.path, _pps(f.udp_pps), _pps(f.udp_sent_pps), tcp,
               _share(f.udp_pps, bare.udp_pps), _share(f.tcp_mbps, bare.tcp_mbps)]
        table.add_row(*row, *([f.note] if notes else []))
    out.print(table)
    natlab = report.figures(lab_bench.NATLAB)
    share = _share(natlab.udp_pps, bare.udp_pps) or "n/a"
    tcp = "n/a" if natlab.tcp_mbps is None else f"{natlab.tcp_mbps:,.0f} Mbit/s"
    print(f"aims: natlab >= {AIM_PPS_SHARE:.0%} of bare NFQUEUE pass-through UDP pkt/s (now {share}); "
          f"natlab >= {AIM_TCP_MBPS / 1000:g} Gbit/s TCP (now {tcp})")
    from natlab.bench import nfq_bench

    for line in nfq_bench.aims(report):
        print(line)
    print("64-byte UDP datagrams sent as fast as one sender can; where 'sent' is close to "
          "'received', the sender, not the path, was the limit.")
