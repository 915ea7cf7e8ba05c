"""``natlab bench nat`` rows of the NFQUEUE binding: a bare pass-through on natlab's own binding.

Not a test: it measures and never asserts.

:data:`BARE_GSO` is the floor of the new binding
(:mod:`natlab.datapaths.nfqueue.qsocket`: GSO super-packets whole, one
``recvmmsg`` and one gathered ``sendmsg`` per batch, ``NFQNL_MSG_VERDICT_BATCH``),
beside :data:`~natlab.bench.lab_bench.BARE`, the same pass-through on
netfilterqueue 1.1.0 (the binding natlab used before). Both use natlab's own
rules and queues; the natlab rows of the same run use the new binding, since
the gateway does. :func:`aims` states the issue's ratios from one report.

A module of rows plugs into :mod:`~natlab.bench.lab_bench` with one line there
(in ``_row_modules``): it names its rows in ``PATHS`` (in table order) and maps each
to an installer in ``installers(lab, spec)``; an installer is a context manager
that makes the gateway namespace carry that path while it is open.
"""

from __future__ import annotations

import selectors
import signal
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

BARE_GSO = "bare NFQUEUE pass-through, natlab binding (GSO, batched)"
PATHS = (BARE_GSO,)


def installers(lab, spec) -> dict[str, Callable]:
    return {BARE_GSO: lambda: _accept_all_gso(lab, spec)}


@contextmanager
def _accept_all_gso(lab, spec) -> Iterator[None]:
    from natlab.bench.lab_paths import process, route_back
    from natlab.realisers.netns.procs import python_module

    spec = replace(spec, name=f"{spec.name}-accept-all-gso")
    spec.spec_path.write_text(spec.to_json())
    ready = Path(spec.run_dir) / "accept-all-gso.ready"
    with route_back(lab):
        with process(lab, spec.netns, [*python_module("natlab.bench.nfq_bench"), "accept-all",
                                        str(spec.spec_path), str(ready)], spec.log_path, ready, None):
            yield


def accept_all(spec_path: str, ready_path: str) -> int:
    """Bind natlab's two queues with natlab's binding, install natlab's rules, accept all unchanged."""
    from natlab.datapaths.nfqueue import nfnetlink as nfq
    from natlab.datapaths.nfqueue.daemon import check_namespace
    from natlab.datapaths.nfqueue.qsocket import QueueSocket
    from natlab.datapaths.nfqueue.queues import MAX_QUEUE_LEN
    from natlab.datapaths.nfqueue.rules import Rules
    from natlab.datapaths.nfqueue.verdicts import Verdicts
    from natlab.gateway.spec import GatewaySpec

    spec = GatewaySpec.from_json(Path(spec_path).read_text())
    check_namespace(spec.netns)  # never touch another namespace's firewall
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _f: stopping.append(signum))
    queues = [QueueSocket(number, max_len=MAX_QUEUE_LEN).open() for number in (spec.queue_in, spec.queue_out)]
    rules = Rules.from_spec(spec)
    selector = selectors.DefaultSelector()

    layouts: dict[int, nfq.Layout | None] = {}

    def drain(queue: QueueSocket) -> None:
        verdicts = Verdicts(queue.queue_be)
        layout = layouts.get(queue.queue)
        for view, off, end in queue.receive():
            packet = layout.parse(view, off, end) if layout is not None else None
            if packet is None:
                try:
                    packet = nfq.parse_packet(view, off, end)
                except ValueError:
                    packet_id = nfq.packet_id_of(view, off, end)
                    if packet_id is None:
                        verdicts.unbatched()
                    else:
                        verdicts.give(packet_id, nfq.NF_DROP)
                    continue
                if packet is None:
                    continue
                layout = layouts[queue.queue] = nfq.Layout.of(view, off, end)
            verdicts.give(packet[0], nfq.NF_ACCEPT)
        queue.send(verdicts.messages())

    try:
        rules.install()
        for queue in queues:
            selector.register(queue.fileno(), selectors.EVENT_READ, queue)
        Path(ready_path).touch()
        while not stopping:
            for key, _mask in selector.select(0.5):
                drain(key.data)
    finally:
        rules.remove()
        for queue in queues:
            queue.close()
    return 0


AIM_TCP_VS_KERNEL = 0.2
AIM_UDP_VS_BARE = 0.8


def _ratio(value, base) -> str:
    return "n/a" if value is None or not base else f"{value / base:.2f}x"


def aims(report) -> list[str]:
    """The issue's aims for the NFQUEUE datapath, as ratios measured in this one run."""
    from natlab.bench.lab_bench import BARE, KERNEL, NATLAB

    kernel, old, new, natlab = (report.figures(p) for p in (KERNEL, BARE, BARE_GSO, NATLAB))
    return [
        f"aim: natlab TCP >= {AIM_TCP_VS_KERNEL}x kernel NAT TCP: "
        f"{_ratio(natlab.tcp_mbps, kernel.tcp_mbps)}",
        f"aim: natlab UDP >= {AIM_UDP_VS_BARE}x bare NFQUEUE UDP pkt/s: "
        f"{_ratio(natlab.udp_pps, old.udp_pps)} of netfilterqueue's, "
        f"{_ratio(natlab.udp_pps, new.udp_pps)} of natlab binding's",
        f"binding: bare pass-through, natlab binding vs netfilterqueue: UDP "
        f"{_ratio(new.udp_pps, old.udp_pps)}, TCP {_ratio(new.tcp_mbps, old.tcp_mbps)}",
    ]


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "accept-all":
        return accept_all(argv[1], argv[2])
    print("usage: python -m natlab.bench.nfq_bench accept-all SPEC READY", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
