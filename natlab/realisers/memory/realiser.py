"""The ``memory`` realiser: the in-memory network, in this process (no root, a manual clock).

Nodes are virtual hosts and NATs of a :class:`~natlab.realisers.memory.network.MemNet`;
each NAT is a real :class:`~natlab.gateway.service.Gateway` on the memory datapath.
Hosts cannot run programs; everything else a scenario does works as on netns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from natlab.realisers.base import Driver, Unavailable

if TYPE_CHECKING:
    from natlab.topology.model import Topology


class MemoryRealiser:
    name = "memory"
    summary = "the in-memory twin: the same engines and gateway service, virtual hosts, a manual clock"
    needs_root = False
    runs_programs = False
    makes_labs = False
    realtime = False
    scenario_default = True
    runs_matrix = True

    def __repr__(self) -> str:
        return f"<realiser {self.name}>"

    def unavailable(self) -> Optional[Unavailable]:
        return None

    def open(self, topology: "Topology", seed: Optional[int] = None) -> Driver:
        from natlab.realisers.memory.driver import MemoryDriver

        return MemoryDriver(topology, seed)
