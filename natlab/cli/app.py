"""The typer application object, shared by the command modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="natlab",
    help="Emulate any NAT: RFC 4787/5382/5508 gateways in network namespaces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from natlab import __version__

        typer.echo(f"natlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Emulate any NAT: RFC 4787/5382/5508 gateways in network namespaces."""
