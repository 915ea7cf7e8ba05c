"""``natlab bench nat``'s kernel-cache row: the natlab gateway on the kernel-cache datapath.

Not a test: it measures and never asserts. A row module (see :mod:`natlab.bench.nfq_bench`):
:data:`PATHS` names its row, :func:`installers` makes the gateway namespace carry it,
:data:`MAPPING_PATHS` asks for the new-mappings figure too, :func:`aims` states issue 13's
ratios against kernel NAT in the same run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

KERNEL_CACHE = "natlab kernel-cache"
PATHS = (KERNEL_CACHE,)
MAPPING_PATHS = (KERNEL_CACHE,)
AIM_VS_KERNEL = 0.8
AIM_NEW_MAPPINGS = 20_000


def installers(lab, spec) -> dict[str, Callable]:
    return {KERNEL_CACHE: lambda: _kernel_cache_gateway(lab, spec)}


def _kernel_cache_gateway(lab, spec):
    """The natlab gateway process on the kernel-cache datapath (default quantum)."""
    from natlab.bench.lab_paths import natlab_gateway
    from natlab.gateway.service import DEFAULT_FAST_QUANTUM

    spec = replace(spec, name=f"{spec.name}-kc", datapath="kernel-cache",
                   extra={**spec.extra, "kernel_cache": {"quantum": DEFAULT_FAST_QUANTUM}})
    return natlab_gateway(lab, spec, engine=None)


def _ratio(value, base) -> str:
    return "n/a" if value is None or not base else f"{value / base:.2f}x"


def _rate(value) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def aims(report) -> list[str]:
    """kernel-cache against kernel NAT, and new mappings per second, from one report."""
    from natlab.bench.lab_bench import KERNEL, NATLAB

    kernel, cache, natlab = (report.figures(p) for p in (KERNEL, KERNEL_CACHE, NATLAB))
    return [
        f"aim: kernel-cache >= {AIM_VS_KERNEL}x kernel NAT: UDP {_ratio(cache.udp_pps, kernel.udp_pps)}, "
        f"TCP {_ratio(cache.tcp_mbps, kernel.tcp_mbps)}",
        f"aim: >= {AIM_NEW_MAPPINGS:,} new mappings/s through a live gateway: natlab "
        f"{_rate(natlab.new_mappings_ps)}, kernel-cache {_rate(cache.new_mappings_ps)}",
    ]
