"""The NFQUEUE datapath: the kernel queues each packet, the gateway process gives the verdict.

Modules: :mod:`~.daemon` (:class:`NfqueueDatapath`, the select loop),
:mod:`~.queues` (the two queues and their verdicts) on natlab's own netlink binding
(:mod:`~.qsocket`, :mod:`~.nfnetlink`, :mod:`~.verdicts`; :mod:`~.partial` for offloaded
checksums, :mod:`~.segment` for super-packets the raw socket must send), :mod:`~.rules`
(iptables, and failing closed), :mod:`~.emit` (the raw socket for emits),
:mod:`~.iface` (pool addresses on the outside interface), :mod:`~.watchdog`
(is the kernel holding packets we never see?), :mod:`~.capture` (pcap of both sides).
"""

from natlab.datapaths.nfqueue.daemon import NfqueueDatapath

__all__ = ["NfqueueDatapath"]
