"""End-to-end NAT throughput: kernel NAT, a bare NFQUEUE pass-through and natlab, in one run.

Not a test: it prints figures and never asserts.

Theory of operation
-------------------
One lab (``natlab-bench-<pid>-*`` namespaces) holds an inside host ``alice``
(192.168.50.0/24), a gateway ``gw`` and an outside host ``server``
(203.0.113.100), joined by veth pairs through the lab's switch namespace. It is
brought up with stub gateways (the gateway namespace only routes); each path
then installs what it needs in the gateway's namespace, is measured, and is
removed again before the next:

- ``natlab``: the real gateway process on the nfqueue datapath, ``python -m
  natlab.gateway <spec>``, with the spec the lab realiser would write (:func:`natlab.realisers.netns.build.gateway_spec`).
- ``natlab kernel-cache`` (:mod:`natlab.bench.kc_bench`): the same process on the
  ``kernel-cache`` datapath (established sessions rewritten by nftables maps, one
  quantum at most).
- ``natlab daemon, pass-through engine``: the same process with
  ``NATLAB_GATEWAY_ENGINE=passthrough``: the daemon's plumbing without NAT logic.
- ``bare NFQUEUE pass-through``: natlab's own iptables rules (same queues, same
  queue length) and a minimal netfilterqueue process accepting every packet
  unchanged: the floor any Python NFQUEUE gateway stands on.
- ``kernel NAT``: ``iptables -t nat -A POSTROUTING -o out0 -j MASQUERADE``.

The two paths without NAT need a route back to 192.168.50.0/24 on the server;
it is added for them and removed after. Kernel NAT runs last because the nat
table switches conntrack on in the gateway's namespace, which would otherwise
tax the NFQUEUE paths.

Each path gets a UDP figure (64-byte datagrams sent as fast as the sender can;
datagrams *received* per second on the server) and a TCP figure (one stream,
Mbit/s received). The natlab paths also get *new mappings per second*: datagrams
from a fresh source port each (one pass over the port space, offered at
:data:`~natlab.bench.new_mappings.MAPPINGS_OFFERED` per second, raw socket), received per second:
every one a new mapping the engine decided. iperf3 is used when installed, else small Python
senders/receivers (``python -m natlab.bench.lab_tools ...``).

Modules: the paths in :mod:`~natlab.bench.lab_paths`, the measuring in
:mod:`~natlab.bench.meter`, the helper processes in :mod:`~natlab.bench.lab_tools`;
this one brings the lab up, runs every row and gathers the :class:`Report`.
Every wait is bounded; the lab is taken down whatever happens.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Optional

from natlab.bench.lab_paths import INSIDE_SUBNET, accept_all, masquerade, natlab_gateway
from natlab.bench.meter import PORT, SERVER, UDP_PAYLOAD, Meter, PathFigures, Progress  # noqa: F401

OUTSIDE_SUBNET = "203.0.113.0/24"


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Report:
    paths: tuple[PathFigures, ...]
    tool: str
    """``iperf3`` or ``python sockets``."""
    seconds: float
    behaviour: str
    lab: str
    by_path: dict[str, dict[str, Optional[float]]] = field(default_factory=dict)
    """``{path: {udp_pps, udp_sent_pps, tcp_mbps}}``: the same figures, keyed for scripts."""

    def figures(self, path: str) -> PathFigures:
        return next(p for p in self.paths if p.path == path)


KERNEL = "kernel NAT (MASQUERADE)"
BARE = "bare NFQUEUE pass-through (netfilterqueue 1.1.0)"
DAEMON = "natlab daemon, pass-through engine"
NATLAB = "natlab"


def _row_modules() -> tuple:
    """Modules adding rows (see :mod:`natlab.bench.nfq_bench`): one line each."""
    from natlab.bench import dpdk_bench, kc_bench, nfq_bench

    return (nfq_bench, kc_bench, dpdk_bench)


ORDER = (KERNEL, BARE, DAEMON, NATLAB, *(p for m in _row_modules() for p in m.PATHS))
MAPPING_PATHS = (NATLAB, *(p for m in _row_modules() for p in getattr(m, "MAPPING_PATHS", ())))
"""Paths also measured for new mappings per second (the ones with an engine deciding)."""


def topology(name: str, behaviour: str):
    """inside host -- gateway -- outside host, as a natlab topology."""
    from natlab.topology import from_data

    return from_data({
        "name": name,
        "networks": {"outside": {"subnet": OUTSIDE_SUBNET}, "inside": {"subnet": INSIDE_SUBNET}},
        # the natlab row is nfqueue (every packet through the engine) whatever the default is;
        # kernel-cache has its own row
        "gateways": {"gw": {"behaviour": behaviour, "inside": "inside", "outside": "outside",
                            "datapath": "nfqueue"}},
        "hosts": {"alice": {"network": "inside"}, "server": {"network": "outside", "address": SERVER}},
    })


def run(seconds: float = 3.0, behaviour: str = "rfc-recommended", progress: Progress = _quiet,
        use_iperf3: Optional[bool] = None) -> Report:
    """Bring the lab up, measure every path, take the lab down."""
    from natlab.realisers.netns import build as runner
    from natlab.realisers.netns.lab import Lab

    if use_iperf3 is None:
        use_iperf3 = shutil.which("iperf3") is not None
    name = f"bench-{os.getpid()}"
    topo = topology(name, behaviour)
    progress(f"lab {name} (namespaces natlab-{name}-*)")
    saved = os.environ.get(runner.STUB_ENV)
    os.environ[runner.STUB_ENV] = "1"  # gateways route only; each path installs its own
    try:
        lab = Lab(runner.up(topo), topo)
    finally:
        if saved is None:
            os.environ.pop(runner.STUB_ENV, None)
        else:
            os.environ[runner.STUB_ENV] = saved
    try:
        gw = topo.gateways[0]
        spec = runner.gateway_spec(topo, gw, lab.state.run_dir)
        meter = Meter(lab, seconds, use_iperf3, progress)
        paths = {
            NATLAB: lambda: natlab_gateway(lab, spec, engine=None),
            DAEMON: lambda: natlab_gateway(lab, spec, engine="passthrough"),
            BARE: lambda: accept_all(lab, spec),
        }
        for module in _row_modules():
            paths.update(module.installers(lab, spec))
        paths[KERNEL] = lambda: masquerade(lab, spec.outside_iface)  # kernel last: see the docstring
        results = {}
        for path in paths:
            progress(path)
            results[path] = meter.measure(path, paths[path], mappings=path in MAPPING_PATHS)
    finally:
        progress("taking the lab down")
        lab.down()
    figures = tuple(results[p] for p in ORDER)
    by_path = {f.path: {"udp_pps": f.udp_pps, "udp_sent_pps": f.udp_sent_pps, "tcp_mbps": f.tcp_mbps,
                        "new_mappings_ps": f.new_mappings_ps}
               for f in figures}
    return Report(figures, "iperf3" if use_iperf3 else "python sockets", seconds, behaviour, name, by_path)
