"""Static 1:1 NAT and port forwards: translations configured, not learned.

Static 1:1 NAT: one internal address always appears as one external address.

Only the address changes (ports and identifiers stay), nothing is filtered and
nothing expires, so no mapping table entry is needed: the IPv4 header checksum
and the transport checksum's pseudo-header part move by one precomputable delta.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from natlab.engine.checksum_deltas import ICMP, TCP, UDP, add_to_csum, add_to_udp_csum
from natlab.engine.policy import Policy, Protocol
from natlab.engine.table import Mapping
from natlab.engine.types import Endpoint, Side, to_int
from natlab.engine.verdicts import DropReason, Forward, Verdict
from natlab.packet.checksum import delta32, fold

if TYPE_CHECKING:
    from natlab.engine.nat import Engine


def translate(engine: "Engine", data, ihl: int, proto: int, addr_off: int, new_addr: int, events, side: Side) -> Verdict:
    """Rewrite the address at ``addr_off`` (12: source, 16: destination) to ``new_addr``."""
    buf = bytearray(data)
    old = int.from_bytes(buf[addr_off:addr_off + 4], "big")
    buf[addr_off:addr_off + 4] = new_addr.to_bytes(4, "big")
    delta = fold(delta32(old, new_addr))
    add_to_csum(buf, 10, delta)
    if proto == UDP and len(buf) >= ihl + 8:
        add_to_udp_csum(buf, ihl + 6, delta)
    elif proto == TCP and len(buf) >= ihl + 20:
        add_to_csum(buf, ihl + 16, delta)
    if side is Side.INSIDE:
        engine.counters.translated_out += 1
    else:
        engine.counters.translated_in += 1
    return Forward(buf, tuple(events) if events else ())


def inbound(engine: "Engine", data, ihl: int, proto: int, y_addr: int, y_port: int, port: int,
            internal: int, events) -> Verdict:
    """A UDP/TCP packet to a static external address. The inside 5-tuple may also be a port
    forward's session; the client now uses the static address, so that session ends and
    the reply leaves from the address and port the client used."""
    sess = engine.by_flow.get((proto, internal, port, y_addr, y_port))
    if sess is not None and sess.mapping.kind == "forward":
        engine._remove_session(sess)
    return translate(engine, data, ihl, proto, 16, internal, events, Side.OUTSIDE)


def translate_or_drop(engine: "Engine", data, ihl: int, proto: int, src: int, dst: int, side: Side, events) -> Verdict:
    """Packets no mapping covers: static NAT if an address has one, else a counted drop."""
    if side is Side.INSIDE and src in engine.static_out:
        return translate(engine, data, ihl, proto, 12, engine.static_out[src], events, side)
    if side is Side.OUTSIDE and dst in engine.static_in:
        return translate(engine, data, ihl, proto, 16, engine.static_in[dst], events, side)
    known = proto in (UDP, TCP, ICMP)
    return engine._drop(DropReason.NO_MAPPING if known else DropReason.UNSUPPORTED_PROTOCOL, events)


def forward_mappings(policy: Policy, external_addr: int, now: float) -> list[Mapping]:
    """Permanent, endpoint-independently filtered mappings for the policy's port forwards."""
    out = []
    for fwd in policy.forwards:
        proto = TCP if fwd.protocol is Protocol.TCP else UDP
        internal = Endpoint(to_int(fwd.internal_address), fwd.internal_port or fwd.external_port)
        external = Endpoint(external_addr, fwd.external_port)
        out.append(Mapping(proto, internal, external, (proto, internal.addr, internal.port), "*", now, "forward"))
    return out
