"""Topologies: a file of networks, gateways, hosts and routers -> one frozen spec.

``load(path)`` reads and checks a file; ``from_data(dict)`` does the same for
already-parsed data. Realising a spec is :mod:`natlab.lab`'s job.
"""

from natlab.topology.load import from_data, load
from natlab.topology.model import (
    Gateway, Host, Leg, Network, Node, Route, Router, Topology, TopologyFile,
)

__all__ = ["Gateway", "Host", "Leg", "Network", "Node", "Route", "Router", "Topology",
           "TopologyFile", "from_data", "load"]
