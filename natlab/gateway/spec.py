"""What a gateway process is told when a lab starts it: one frozen, JSON-able value.

The lab realiser (``natlab.lab``) writes it to ``<run_dir>/gw-<name>.json`` and
starts ``python -m natlab.gateway <that file>`` inside the gateway's namespace.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from natlab.datapaths.registry import DEFAULT as DEFAULT_DATAPATH

IMPLIED_DATAPATH = "nfqueue"
"""The datapath of a spec that names none (written before datapaths existed, or by
:meth:`GatewaySpec.to_json` for nfqueue)."""


@dataclass(frozen=True)
class GatewaySpec:
    lab: str
    """The lab's name (its tag)."""
    name: str
    """The gateway's name in the topology."""
    netns: str
    """The gateway's network namespace, e.g. ``natlab-two-homes-nat-a``."""
    inside_ifaces: tuple[str, ...]
    """Interface names (inside the gateway namespace) facing the inside networks."""
    outside_iface: str
    """Interface name facing the outside network."""
    inside_subnets: tuple[str, ...]
    outside_subnet: str
    pool: tuple[str, ...]
    """External addresses (all configured on ``outside_iface`` so they answer ARP)."""
    preset: str
    """Preset name the policy came from (for status/explain)."""
    policy: dict[str, Any]
    """The full resolved policy as plain data (``natlab.behaviours.presets.policy_to_dict``)."""
    seed: int
    """Seed for the engine's ``random.Random``."""
    run_dir: str
    """The lab's run directory (``/run/natlab/<lab>``)."""
    queue_in: int = 0
    """NFQUEUE number for destination rewrites (before routing)."""
    queue_out: int = 1
    """NFQUEUE number for source rewrites (after routing)."""
    mark: int = 0x4E4C
    """Firewall mark on packets the gateway emits itself, so its rules skip them."""
    behaviour_dirs: tuple[str, ...] = ()
    """Folders whose preset files ``configure`` may load (the topology file's folder,
    ``$NATLAB_BEHAVIOURS`` and the folders of path behaviours, as at ``natlab up``);
    preset names are always accepted."""
    datapath: str = DEFAULT_DATAPATH
    """How packets reach this gateway: a name in :mod:`natlab.datapaths.registry`."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def inside(self) -> str:
        """The gateway's own inside address, where NAT-PMP, PCP and UPnP are served:
        ``extra["portmap"]["inside_address"]``, or the first usable of the first inside subnet.
        (In ``extra``, so a gateway image from before port mapping still reads the spec.)"""
        given = self.extra.get("portmap", {}).get("inside_address")
        if given:
            return str(given)
        import ipaddress

        return str(next(ipaddress.ip_network(self.inside_subnets[0], strict=False).hosts()))

    @property
    def upstream_address(self) -> str:
        """The inside address of the NAT above ("": none), whose PCP server
        ``port_mapping.pcp_interworking`` passes requests on to (``extra["portmap"]``)."""
        return str(self.extra.get("portmap", {}).get("upstream_address") or "")

    @property
    def control_socket(self) -> Path:
        return Path(self.run_dir) / f"gw-{self.name}.sock"

    @property
    def spec_path(self) -> Path:
        return Path(self.run_dir) / f"gw-{self.name}.json"

    @property
    def log_path(self) -> Path:
        return Path(self.run_dir) / f"gw-{self.name}.log"

    def to_json(self) -> str:
        data = asdict(self)
        if data["datapath"] == IMPLIED_DATAPATH:
            # Left out for nfqueue, so a gateway image from before datapaths existed (its
            # GatewaySpec takes no such key, and runs nfqueue) still reads the spec.
            del data["datapath"]
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "GatewaySpec":
        data = json.loads(text)
        data.setdefault("datapath", IMPLIED_DATAPATH)  # a spec without one: nfqueue, whatever DEFAULT is now
        for key in ("inside_ifaces", "inside_subnets", "pool", "behaviour_dirs"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def portmap_extra(topo: Any, gw: Any) -> dict[str, Any]:
    """``GatewaySpec.extra`` entries for the port mapping server: what it cannot derive from the
    spec (an inside address other than the subnet's first, an upstream NAT); {} for most labs."""
    import ipaddress

    found: dict[str, Any] = {}
    if gw.address != next(ipaddress.ip_network(topo.network(gw.inside).subnet).hosts()):
        found["inside_address"] = str(gw.address)
    if upstream_of(topo, gw):
        found["upstream_address"] = upstream_of(topo, gw)
    return {"portmap": found} if found else {}


def policy_for_spec(policy: Any) -> dict[str, Any]:
    """The policy as a spec carries it: ``port_mapping`` is left out while it has every default
    (serving nothing), so a gateway image from before port mapping still reads the spec."""
    from natlab.behaviours.presets import policy_to_dict
    from natlab.engine.port_mapping_policy import PortMappingPolicy

    data = policy_to_dict(policy)
    if getattr(policy, "port_mapping", None) == PortMappingPolicy():
        data.pop("port_mapping", None)
    return data


def upstream_of(topo: Any, gw: Any) -> str:
    """The inside address of the gateway whose inside network is ``gw``'s outside ("": none)."""
    above = topo.network(gw.outside).gateway
    return next((str(g.address) for g in topo.gateways if g.name == above), "")
