"""``--datapath NAME[:KEY=VALUE]...``: one option for every command that brings labs up (up, run, matrix, explore)."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

DatapathOpt = Annotated[Optional[str], typer.Option(
    "--datapath", help="every gateway on this datapath: nfqueue (every packet through the engine), "
    "kernel-cache (established flows rewritten in the kernel) or dpdk, optionally with options "
    "for every gateway (dpdk:workers=2:driver=af_packet) (default: each gateway's "
    "'datapath:' key, else kernel-cache; nfqueue, with a warning, where kernel-cache cannot run)")]


def force(name: Optional[str]) -> None:
    """Make ``name`` the datapath of every gateway this process (and its children) starts."""
    if name is None:
        return
    from natlab.datapaths import registry

    os.environ[registry.ENV] = registry.choose(name)
