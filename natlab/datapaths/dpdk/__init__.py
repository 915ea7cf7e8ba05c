"""The DPDK datapath: established flows rewritten by a C fast path, the rest by the engine.

Layers, as pyca/pynacl does cffi: ``csrc/*.c`` (C shims over DPDK's inline
rx/tx/mbuf calls, the session table and the per-packet rewrite), :mod:`~.binding`
(the cffi API-mode module, built by ``install.sh --dpdk`` or on first use),
:mod:`~.ports` (the Pythonic :class:`~.ports.Dataplane`). Over them:
:mod:`~.fastcache` (what C holds, folded back into the engine), :mod:`~.router`
(the slow path: ARP, TTL, ICMP, the engine), :mod:`~.routes`, :mod:`~.frames`,
:mod:`~.daemon` (:class:`DpdkDatapath`, the poll loop), :mod:`~.lab_setup`
(what a lab does for a gateway on this datapath), :mod:`~.availability`.
Nothing imports cffi or DPDK until a gateway starts or ``unavailable()`` is asked.
"""

from natlab.datapaths.dpdk.daemon import DpdkDatapath

__all__ = ["DpdkDatapath"]
