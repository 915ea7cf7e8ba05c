"""The kernel-cache datapath: established sessions rewritten by nftables in the gateway's
kernel, as the engine decided them; everything else through NFQUEUE, as on ``nfqueue``.

Modules: :mod:`~.nft` (the table, element updates and counter reads as text),
:mod:`~.cache` (which entries are installed under which marks; pure),
:mod:`~.serve` (the loop hooks on NFQUEUE's select loop), :mod:`~.lib`
(libnftables through python3-nftables), :mod:`~.probe` (does this kernel do it?).
"""

from __future__ import annotations

from typing import Any, Optional

from natlab.gateway.service import DEFAULT_FAST_QUANTUM, Gateway

__all__ = ["KernelCacheDatapath"]


class KernelCacheDatapath:
    """NFQUEUE's gateway process plus a session cache in nftables maps (stateless, no conntrack)."""

    name = "kernel-cache"
    summary = "established sessions rewritten in the kernel (nftables maps, one quantum at most); NFQUEUE for the rest"
    in_process = False

    def unavailable(self) -> Optional[str]:
        from natlab.datapaths.kernelcache import lib, probe
        from natlab.datapaths.nfqueue import NfqueueDatapath

        return NfqueueDatapath().unavailable() or lib.missing() or probe.kernel_missing()

    def gateway(self, spec: Any, engine: Any, policy: Any) -> Gateway:
        """NFQUEUE's gateway (raw-socket sender, kernel pool hooks), with a fast-path quantum."""
        from natlab.datapaths.nfqueue import NfqueueDatapath

        gateway = NfqueueDatapath().gateway(spec, engine, policy)
        if gateway.fast_quantum is None:  # a spec without a kernel_cache block: the default
            gateway.fast_quantum = DEFAULT_FAST_QUANTUM
        return gateway

    def serve(self, gateway: Gateway) -> int:
        from natlab.datapaths.kernelcache.serve import KernelCache
        from natlab.datapaths.nfqueue.daemon import serve_gateway

        return serve_gateway(gateway, KernelCache(gateway))
