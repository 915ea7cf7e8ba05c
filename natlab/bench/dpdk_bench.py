"""``natlab bench nat`` row of the DPDK datapath: the gateway on DPDK beside kernel NAT.

Not a test: it measures and never asserts.

:data:`DPDK` is the real gateway process on the dpdk datapath (one poll loop,
af_xdp over the gateway's veths, the C fast path; :data:`DPDK_2W` the same with two
worker lcores), with the lab set-up that
datapath needs (offloads off on the veths' peers, the kernel's copy dropped:
:mod:`natlab.datapaths.dpdk.lab_setup`) for this row only, undone after it, so
the other rows of the run keep their own offloads. Same endpoints, same tools,
measured before kernel NAT (which runs last, see :mod:`natlab.bench.lab_bench`).

:data:`KERNEL_SAME_OFFLOADS` is kernel NAT again with the offloads this datapath
turns off (no TSO/GSO toward the gateway, no GRO on it): the same endpoints as
the DPDK row frame for frame, so the two rows differ only in who forwards. Kernel
NAT as users run it (offloads on: 64 KiB super-packets) stays the baseline of the
aims; this row says how much of the gap is the offloads.
:func:`aims` states the issue's ratios against both from one report.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Iterator, Optional

DPDK = "natlab on dpdk (C fast path)"
DPDK_2W = "natlab on dpdk, 2 workers"
KERNEL_SAME_OFFLOADS = "kernel NAT, offloads off as on dpdk"
PATHS = (DPDK, DPDK_2W, KERNEL_SAME_OFFLOADS)
ON_DPDK = (DPDK, DPDK_2W)
"""The rows that need the dpdk datapath (elsewhere they are empty, saying why)."""
AIM_UDP_VS_KERNEL = 1.0
AIM_TCP_VS_KERNEL = 0.5


def installers(lab, spec) -> dict[str, Callable]:
    return {DPDK: lambda: _dpdk_gateway(lab, spec),
            DPDK_2W: lambda: _dpdk_gateway(lab, spec, workers=2),
            KERNEL_SAME_OFFLOADS: lambda: _kernel_same_offloads(lab, spec)}


@contextmanager
def _kernel_same_offloads(lab, spec) -> Iterator[None]:
    """MASQUERADE with the DPDK row's offloads (kernel NAT's own row has them on)."""
    from natlab.bench.lab_paths import masquerade
    from natlab.datapaths.dpdk import lab_setup
    from natlab.realisers.netns.namespaces import switch_ns

    ifaces = [*spec.inside_ifaces, spec.outside_iface]
    sw = switch_ns(spec.lab)
    lab_setup.offloads_off(spec.netns, ifaces, sw, lab_setup.peers_of(spec.netns, ifaces, sw))
    try:
        with masquerade(lab, spec.outside_iface):
            yield
    finally:
        lab_setup.offloads_on(spec)


@contextmanager
def _dpdk_gateway(lab, spec, workers: int = 1) -> Iterator[None]:
    from natlab.bench.lab_paths import check, process
    from natlab.datapaths import registry
    from natlab.datapaths.dpdk import lab_setup
    from natlab.errors import LabError
    from natlab.realisers.netns.procs import python_module

    why = registry.unavailable("dpdk")
    if why:
        raise LabError("the dpdk datapath is unavailable", got=why)
    spec = replace(spec, name=f"{spec.name}-dpdk{workers}", datapath="dpdk", extra={"dpdk": {"workers": workers}})
    spec.spec_path.write_text(spec.to_json())
    lab_setup.prepare(spec)
    try:
        with process(lab, spec.netns, [*python_module("natlab.gateway"), str(spec.spec_path)],
                      spec.log_path, spec.control_socket, None):
            yield
    finally:
        lab_setup.undo(spec)
        check(lab.exec("gw", ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
                        capture_output=True, text=True, timeout=30))


def _ratio(value: Optional[float], base: Optional[float]) -> str:
    return "n/a" if value is None or not base else f"{value / base:.2f}x"


def aims(report) -> list[str]:
    """The issue's aims for the DPDK datapath, as ratios to kernel NAT in this one run."""
    from natlab.bench.lab_bench import KERNEL

    kernel, dpdk, dpdk2, same = (report.figures(p) for p in (KERNEL, DPDK, DPDK_2W, KERNEL_SAME_OFFLOADS))
    return [f"aim: natlab on dpdk UDP >= {AIM_UDP_VS_KERNEL}x kernel NAT UDP pkt/s: "
            f"{_ratio(dpdk.udp_pps, kernel.udp_pps)} (2 workers {_ratio(dpdk2.udp_pps, kernel.udp_pps)}); "
            f"TCP >= {AIM_TCP_VS_KERNEL}x kernel NAT TCP: {_ratio(dpdk.tcp_mbps, kernel.tcp_mbps)} "
            f"(2 workers {_ratio(dpdk2.tcp_mbps, kernel.tcp_mbps)})",
            f"dpdk vs kernel NAT with the same offloads off: UDP {_ratio(dpdk.udp_pps, same.udp_pps)}, "
            f"TCP {_ratio(dpdk.tcp_mbps, same.tcp_mbps)}"]
