"""Datapaths: how packets reach a gateway's engine (see :mod:`.base` and :mod:`.registry`).

``nfqueue/`` (kernel queues, a gateway process per NAT) and ``memory/`` (the
in-memory network, in process). The next ones (a kernel session cache, DPDK)
are a folder and a line in :data:`natlab.datapaths.registry.DATAPATHS` each.
"""
