"""Can the DPDK datapath run here? One sentence naming what is missing, or None.

Checked in this order, each cheap and without side effects: the Python package
(cffi), the DPDK development package (pkg-config libdpdk) or an already built
binding, a C compiler to build it, the PMD plugins for virtual ports
(net_af_xdp or net_af_packet), root (the EAL, AF_XDP and AF_PACKET sockets
need CAP_NET_ADMIN/CAP_NET_RAW/CAP_SYS_ADMIN), and the kernel's packet
sockets (AF_XDP or AF_PACKET).
"""

from __future__ import annotations

import glob
import os
import socket
from typing import Optional

AF_XDP = 44


def pmd_dirs() -> list[str]:
    return sorted(glob.glob("/usr/lib/*/dpdk/pmds-*")) + sorted(glob.glob("/usr/local/lib*/dpdk/pmds-*"))


def pmds() -> set[str]:
    """The virtual-port drivers installed: af_xdp, af_packet."""
    found = set()
    for folder in pmd_dirs():
        for driver in ("af_xdp", "af_packet"):
            if glob.glob(os.path.join(folder, f"librte_net_{driver}.so*")):
                found.add(driver)
    return found


def kernel_sockets() -> set[str]:
    """Packet sockets this kernel lets us open (needs root): af_xdp, af_packet."""
    found = set()
    for name, family, kind in (("af_xdp", AF_XDP, socket.SOCK_RAW), ("af_packet", socket.AF_PACKET, socket.SOCK_RAW)):
        try:
            socket.socket(family, kind, 0).close()
            found.add(name)
        except OSError:
            pass
    return found


def unavailable() -> Optional[str]:
    from natlab.datapaths.dpdk.binding import missing

    why = missing()
    if why:
        return why
    if not pmds():
        return ("DPDK's virtual port drivers are missing (no librte_net_af_xdp/af_packet under "
                "/usr/lib/*/dpdk/pmds-*; apt-get install dpdk-dev)")
    if os.geteuid() != 0:
        return "the DPDK datapath needs root (the EAL and AF_XDP/AF_PACKET sockets: CAP_NET_ADMIN, CAP_NET_RAW)"
    if not kernel_sockets() & pmds():
        return "this kernel opens neither AF_XDP nor AF_PACKET sockets (CONFIG_XDP_SOCKETS, CONFIG_PACKET)"
    return None
