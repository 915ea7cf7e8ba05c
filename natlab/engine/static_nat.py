"""Static 1:1 NAT and port forwards: translations configured, not learned.

Static 1:1 NAT: one internal address always appears as one external address.

Only the address changes (ports and identifiers stay), nothing is filtered and
nothing expires, so no mapping table entry is needed: the IPv4 header checksum
and the transport checksum's pseudo-header part move by one precomputable delta.

Port forwards are permanent mappings (:func:`forward_mappings`), kept by the state
like any other. The functions here take only what they use: the counters and the
:class:`~natlab.engine.types.Addresses` value.
"""

from __future__ import annotations

from natlab.engine.checksum_deltas import ICMP, TCP, UDP, add_to_csum, add_to_udp_csum
from natlab.engine.counters import Counters
from natlab.engine.policy import Policy, Protocol
from natlab.engine.table import Mapping
from natlab.engine.types import Addresses, Endpoint, FlowKey, Side, to_int
from natlab.engine.verdicts import DropReason, Forward, Verdict
from natlab.packet.checksum import delta32, fold


def translate(counters: Counters, data, ihl: int, proto: int, addr_off: int, new_addr: int, events,
              side: Side) -> Verdict:
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
        counters.translated_out += 1
    else:
        counters.translated_in += 1
    return Forward(buf, tuple(events) if events else ())


def translate_or_drop(addresses: Addresses, counters: Counters, data, ihl: int, proto: int, src: int, dst: int,
                      side: Side, events) -> Verdict:
    """Packets no mapping covers: static NAT if an address has one, else a counted drop."""
    if side is Side.INSIDE and src in addresses.static_out:
        return translate(counters, data, ihl, proto, 12, addresses.static_out[src], events, side)
    if side is Side.OUTSIDE and dst in addresses.static_in:
        return translate(counters, data, ihl, proto, 16, addresses.static_in[dst], events, side)
    known = proto in (UDP, TCP, ICMP)
    return counters.drop(DropReason.NO_MAPPING if known else DropReason.UNSUPPORTED_PROTOCOL, events)


def forward_mappings(policy: Policy, external_addr: int, now: float) -> list[Mapping]:
    """Permanent, endpoint-independently filtered mappings for the policy's port forwards."""
    out = []
    for fwd in policy.forwards:
        proto = TCP if fwd.protocol is Protocol.TCP else UDP
        internal = Endpoint(to_int(fwd.internal_address), fwd.internal_port or fwd.external_port)
        external = Endpoint(external_addr, fwd.external_port)
        out.append(Mapping(proto, internal, external, FlowKey(proto, internal.addr, internal.port), now, "forward"))
    return out
