"""The NFQUEUE datapath: the kernel queues each packet, the gateway process gives the verdict.

Modules: :mod:`~.daemon` (:class:`NfqueueDatapath`, the select loop),
:mod:`~.queues` (libnetfilter_queue binding and verdicts), :mod:`~.rules`
(iptables, and failing closed), :mod:`~.emit` (the raw socket for emits),
:mod:`~.iface` (pool addresses on the outside interface), :mod:`~.watchdog`
(is the kernel holding packets we never see?), :mod:`~.capture` (pcap of both sides).
"""

from natlab.datapaths.nfqueue.daemon import NfqueueDatapath

__all__ = ["NfqueueDatapath"]
