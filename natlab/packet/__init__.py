"""The packet layer (sans-I/O): checksums, header values, builders, verification.

* :mod:`~natlab.packet.checksum` — RFC 1071 sums and RFC 1624 incremental updates
* :mod:`~natlab.packet.headers` — frozen header values with parse()/emit(), summarize()
* :mod:`~natlab.packet.build` — whole, correct packets from values
* :mod:`~natlab.packet.verify` — problems(): every checksum/length problem of a packet
"""

from natlab.packet import build
from natlab.packet.build import (
    ICMP_QUOTE_LIMIT,
    IPFields,
    fragment,
    icmp,
    icmp_echo,
    icmp_error,
    ipv4,
    tcp,
    tcp_rst_for,
    udp,
)
from natlab.packet.checksum import (
    apply_delta,
    checksum,
    fold,
    delta16,
    delta32,
    pseudo_header_sum,
    transport_checksum,
    udp_checksum_field,
)
from natlab.packet.headers import (
    ICMPHeader,
    ICMPType,
    IPFlags,
    IPv4Header,
    Packet,
    PacketError,
    TCPFlags,
    TCPHeader,
    UDPHeader,
    icmp_name,
    parse_packet,
    summarize,
    to_int,
    to_str,
)
from natlab.packet.verify import problems

__all__ = [
    "ICMP_QUOTE_LIMIT", "IPFields", "fragment", "icmp", "icmp_echo", "icmp_error", "ipv4",
    "tcp", "tcp_rst_for", "udp",
    "apply_delta", "checksum", "delta16", "delta32", "fold", "pseudo_header_sum",
    "transport_checksum", "udp_checksum_field",
    "ICMPHeader", "ICMPType", "IPFlags", "IPv4Header", "Packet", "PacketError", "TCPFlags",
    "TCPHeader", "UDPHeader", "icmp_name", "parse_packet", "summarize", "to_int", "to_str",
    "problems", "build",
]
