"""What gateway-service tests share: a spec for a gateway that never runs, and a sender that keeps what it got."""

from __future__ import annotations

from pathlib import Path

from natlab.gateway.spec import GatewaySpec


def make_spec(tmp_path: Path, pool=("203.0.113.10",)) -> GatewaySpec:
    return GatewaySpec(lab="t", name="nat-a", netns="natlab-t-nat-a", inside_ifaces=("in0",),
                       outside_iface="out0", inside_subnets=("192.168.77.0/24",),
                       outside_subnet="203.0.113.0/24", pool=tuple(pool), preset="rfc",
                       policy={}, seed=1, run_dir=str(tmp_path))


class Sent:
    def __init__(self):
        self.packets = []

    def send(self, packet):
        self.packets.append(bytes(packet))
