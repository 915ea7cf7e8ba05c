"""The pool addresses on the outside interface, changed when the pool changes.

Runs inside the gateway's namespace (pyroute2 on the current namespace). A new
address gets the outside subnet's prefix length when it lies in that subnet,
else /32; an address is removed with whatever prefix it was configured with.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Sequence

from natlab.errors import LabError

log = logging.getLogger("natlab.gateway")


class OutsideAddresses:
    def __init__(self, iface: str, subnet: str) -> None:
        self.iface = iface
        self.subnet = ipaddress.IPv4Network(subnet, strict=False)

    def _prefix(self, address: str) -> int:
        return self.subnet.prefixlen if ipaddress.IPv4Address(address) in self.subnet else 32

    def add_addresses(self, addresses: Sequence[str]) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ipr:
            index = self._index(ipr)
            for address in addresses:
                try:
                    ipr.addr("add", index=index, address=address, prefixlen=self._prefix(address))
                except NetlinkError as err:
                    if err.code != 17:  # EEXIST: already there is fine
                        raise LabError(f"cannot add {address} to {self.iface}", got=str(err)) from err

    def remove_addresses(self, addresses: Sequence[str]) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            index = self._index(ipr)
            configured = {a.get_attr("IFA_ADDRESS"): a["prefixlen"] for a in ipr.get_addr(index=index, family=2)}
            for address in addresses:
                if address in configured:
                    ipr.addr("del", index=index, address=address, prefixlen=configured[address])

    def _index(self, ipr) -> int:
        found = ipr.link_lookup(ifname=self.iface)
        if not found:
            raise LabError(f"no interface {self.iface} in this namespace")
        return found[0]
