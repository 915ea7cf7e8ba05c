"""Packets whose transport checksum the kernel left for the NIC (``NFQA_SKB_CSUMNOTREADY``).

Theory of operation
-------------------
A local sender on a device that offloads checksums (a veth does) leaves TCP and
UDP checksums *partial*: the field holds the pseudo-header sum only (RFC 793
3.1, RFC 768: source, destination, protocol, length; not complemented), and
whoever transmits sums the segment from the transport header on and stores the
complement. With ``NFQA_CFG_F_GSO`` the kernel queues such packets as they are.

Two facts of the kernel decide what the gateway must do (``nfnetlink_queue.c``,
``tcp_offload.c``, ``udp_offload.c``):

- a verdict that carries a payload makes the packet ``CHECKSUM_NONE``: the
  field is then taken as the final checksum;
- a GSO super-packet is segmented on the way out, and each segment's checksum is
  computed from the segment's own bytes: TCP rewrites the field from the
  pseudo-header first; UDP adjusts the field it finds, which must hold the
  pseudo-header sum.

The engine updates checksums incrementally (RFC 1624 eqn. 3, ``HC' = ~(~HC + ~m + m')``).
On a partial field that is wrong twice: the sign of the change is reversed (the
field is the sum, not its complement), and the ports, which are not in the
pseudo-header, are counted. So, around the engine:

- a partial packet that is not GSO (at most one MTU) is completed *before* the
  engine (:func:`complete`): one RFC 1071 sum of its segment, the sum the NIC
  would have made. The engine then sees an ordinary packet and its incremental
  update is exact; the field the kernel takes as final is right.
- a GSO super-packet is never summed: after the engine the field is set to the
  pseudo-header sum of the new addresses (:func:`pseudo_header`), which is what
  the segmentation needs. Nothing reads the payload.
"""

from __future__ import annotations

TCP, UDP = 6, 17
_CSUM_AT = {TCP: 16, UDP: 6}
"""Offset of the checksum field in the transport header."""


def _l4(buf) -> tuple[int, int, int] | None:
    """(header length, total length, checksum offset) of an unfragmented TCP/UDP packet."""
    if len(buf) < 20 or buf[0] >> 4 != 4:
        return None
    at = _CSUM_AT.get(buf[9])
    if at is None or (buf[6] & 0x3F) or buf[7]:  # MF or a fragment offset: not a whole segment
        return None
    ihl = (buf[0] & 15) << 2
    total = (buf[2] << 8) | buf[3]
    if ihl < 20 or total > len(buf) or total < ihl + at + 2:
        return None
    return ihl, total, ihl + at


def complete(buf: bytearray) -> bool:
    """Replace a partial checksum (the pseudo-header sum) with the full one, in place.

    The one's-complement sum of 16-bit words is the segment read as one big
    integer modulo 0xFFFF (2**16 = 1 mod 0xFFFF), so CPython's big-int code does
    the RFC 1071 sum. A zero sum goes out as 0xFFFF, as the kernel's own
    ``skb_checksum_help`` does (for UDP 0 would mean "no checksum", RFC 768).
    Returns False (and changes nothing) for what is not an unfragmented TCP/UDP packet.
    """
    # _l4 inlined: this runs once for every offloaded packet up to one MTU.
    n = len(buf)
    if n < 28:
        return False
    proto = buf[9]
    if proto == 17:
        at = 6
    elif proto == 6:
        at = 16
    else:
        return False
    vihl = buf[0]
    ihl = (vihl & 15) << 2
    total = (buf[2] << 8) | buf[3]
    if vihl >> 4 != 4 or buf[6] & 0x3F or buf[7] or ihl < 20 or total > n or total < ihl + at + 2:
        return False
    at += ihl
    rest = int.from_bytes(buf[ihl:total], "big")
    if (total - ihl) & 1:
        rest <<= 8
    rest %= 0xFFFF
    csum = 0xFFFF - rest if rest else 0xFFFF
    buf[at] = csum >> 8
    buf[at + 1] = csum & 0xFF
    return True


def pseudo_header(buf: bytearray) -> bool:
    """Set the checksum field to the pseudo-header sum of the packet's own header, in place
    (the partial form GSO segmentation expects). False if it is not a whole TCP/UDP packet."""
    where = _l4(buf)
    if where is None:
        return False
    ihl, total, at = where
    total_sum = (((buf[12] + buf[16]) << 8) + buf[13] + buf[17] + ((buf[14] + buf[18]) << 8) + buf[15] + buf[19]
                 + buf[9] + (total - ihl))
    while total_sum > 0xFFFF:
        total_sum = (total_sum & 0xFFFF) + (total_sum >> 16)
    buf[at] = total_sum >> 8
    buf[at + 1] = total_sum & 0xFF
    return True
