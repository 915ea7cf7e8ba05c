"""TCP segmentation in software, for a GSO super-packet the gateway must send itself.

With ``NFQA_CFG_F_GSO`` the queues hand over TCP super-packets of up to 64 KiB.
Forwarded, the kernel segments them on the way out; but a packet the engine
hairpins leaves through the raw socket (:mod:`~natlab.datapaths.nfqueue.emit`),
which refuses anything longer than the route's MTU (``EMSGSIZE``). For those,
:func:`tcp_segments` does what TCP segmentation offload would (RFC 793 3.1, RFC
9293 3.7): cut the payload into pieces that fit, each with a copy of the headers,
its own sequence number, IPv4 identification and total length; FIN and PSH on
the last piece only, CWR on the first only; both checksums computed afresh,
since a super-packet's transport checksum is partial.
"""

from __future__ import annotations

import struct
from typing import Optional

_FIN, _PSH, _CWR = 0x01, 0x08, 0x80


def _fold_sum(data) -> int:
    """The one's-complement sum of ``data`` (even length) as 16 bits, 0 for none (RFC 1071)."""
    rest = int.from_bytes(data, "big") % 0xFFFF
    return rest if rest or not any(data) else 0xFFFF


def tcp_segments(packet: bytes | bytearray, mtu: int) -> Optional[list[bytearray]]:
    """``packet`` (TCP over IPv4, unfragmented) cut into packets of at most ``mtu`` bytes; None
    if it is not such a packet or its headers alone do not fit."""
    buf = bytes(packet)
    if len(buf) < 40 or buf[0] >> 4 != 4 or buf[9] != 6 or (buf[6] & 0x3F) or buf[7]:
        return None
    ihl = (buf[0] & 15) << 2
    total = (buf[2] << 8) | buf[3]
    if total > len(buf) or total < ihl + 20:
        return None
    thl = (buf[ihl + 12] >> 4) << 2
    if thl < 20 or ihl + thl > total:
        return None
    mss = mtu - ihl - thl
    if mss <= 0:
        return None
    ip_id = (buf[4] << 8) | buf[5]
    seq = struct.unpack_from(">I", buf, ihl + 4)[0]
    flags = buf[ihl + 13]
    header, payload = buf[:ihl + thl], buf[ihl + thl:total]
    pseudo = (buf[12] << 8 | buf[13]) + (buf[14] << 8 | buf[15]) + (buf[16] << 8 | buf[17]) + \
        (buf[18] << 8 | buf[19]) + 6
    out = []
    starts = range(0, max(len(payload), 1), mss)
    for i, start in enumerate(starts):
        chunk = payload[start:start + mss]
        seg = bytearray(header)
        seg += chunk
        length = len(seg)
        struct.pack_into(">HH", seg, 2, length, (ip_id + i) & 0xFFFF)
        seg[10] = seg[11] = 0
        ip_sum = _fold_sum(seg[:ihl])
        struct.pack_into(">H", seg, 10, ~ip_sum & 0xFFFF)
        struct.pack_into(">I", seg, ihl + 4, (seq + start) & 0xFFFFFFFF)
        last = i == len(starts) - 1
        seg[ihl + 13] = flags & ~((0 if last else _FIN | _PSH) | (0 if i == 0 else _CWR))
        seg[ihl + 16] = seg[ihl + 17] = 0
        segment = seg[ihl:]
        if len(segment) & 1:
            segment += b"\0"
        l4 = pseudo + (length - ihl) + _fold_sum(segment)
        while l4 > 0xFFFF:
            l4 = (l4 & 0xFFFF) + (l4 >> 16)
        struct.pack_into(">H", seg, ihl + 16, (~l4 & 0xFFFF) or 0xFFFF)
        out.append(seg)
    return out
