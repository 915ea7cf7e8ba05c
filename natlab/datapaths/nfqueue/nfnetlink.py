"""The nfnetlink_queue wire format: config, packet and verdict messages (no I/O).

A netlink message is an ``nlmsghdr`` (host byte order), an ``nfgenmsg`` (its
``res_id``, the queue number, in network order) and attributes (``nlattr``:
length and type in host order, values in network order, each padded to 4
bytes). The constants are those of ``linux/netfilter/nfnetlink_queue.h``.

What natlab asks of a queue (:func:`bind_message`): copy whole packets
(``NFQNL_COPY_PACKET``, range :data:`COPY_RANGE`), a queue length, and the
flags :data:`NFQA_CFG_F_GSO` set and :data:`NFQA_CFG_F_FAIL_OPEN` cleared: the
kernel hands over GSO super-packets whole (a 64 KiB TCP burst is one trip) and
drops, never passes, what the queue cannot take (fail closed).

A packet message (:func:`parse_packet`) carries ``NFQA_PACKET_HDR`` (the id),
``NFQA_IFINDEX_INDEV``, ``NFQA_SKB_INFO`` (:data:`SKB_CSUMNOTREADY`,
:data:`SKB_GSO`), ``NFQA_CAP_LEN`` when the copy was cut short, and
``NFQA_PAYLOAD``. A verdict is ``NFQNL_MSG_VERDICT`` for one packet (with a new
payload, or not) or ``NFQNL_MSG_VERDICT_BATCH``: one verdict for every packet
still queued whose id is at most the one given.
"""

from __future__ import annotations

import operator
import socket
import struct
from typing import NamedTuple, Optional

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 1, 2, 3
PACKET_TYPE = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 1, 4

NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_MARK = 1, 2, 3
NFQA_IFINDEX_INDEV, NFQA_IFINDEX_OUTDEV = 5, 6
NFQA_PAYLOAD, NFQA_CAP_LEN, NFQA_SKB_INFO = 10, 13, 14

NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_FAIL_OPEN = 1 << 0
NFQA_CFG_F_GSO = 1 << 2
SKB_CSUMNOTREADY = 1 << 0
"""The L4 checksum is partial: its field holds the pseudo-header sum, the rest is the NIC's job."""
SKB_GSO = 1 << 1
"""A GSO super-packet: bigger than the device MTU, segmented (and checksummed) on the way out."""

NF_DROP, NF_ACCEPT = 0, 1

COPY_RANGE = 0xFFFF
"""Asked for: the largest IPv4 packet. The kernel grants :data:`KERNEL_COPY_MAX`."""
KERNEL_COPY_MAX = COPY_RANGE - 4
"""65,535 less a netlink attribute header (``NFQNL_MAX_COPY_RANGE``)."""

_NLMSGHDR = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")
_ATTR = struct.Struct("=HH")
_U32 = struct.Struct(">I")
_VERDICT = struct.Struct("=IHHIIBBHHHII")  # nlmsghdr, nfgenmsg, NFQA_VERDICT_HDR (values byte-swapped)
_PAYLOAD_ATTR = struct.Struct("=HH")
_htonl = socket.htonl
_ERRNO = struct.Struct("=i")
VERDICT_SIZE = _VERDICT.size  # 32


def _attr(kind: int, value: bytes) -> bytes:
    raw = _ATTR.pack(4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _message(kind: int, queue: int, attrs: bytes, flags: int, seq: int) -> bytes:
    body = _NFGEN.pack(socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return _NLMSGHDR.pack(16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def config_message(queue: int, copy_range: int, seq: int = 0) -> bytes:
    """``NFQNL_MSG_CONFIG`` setting COPY_PACKET mode with ``copy_range`` for ``queue``."""
    params = struct.pack(">IB", copy_range, NFQNL_COPY_PACKET)   # nfqnl_msg_config_params
    return _message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_PARAMS, params), NLM_F_REQUEST, seq)


def bind_message(queue: int, *, copy_range: int = COPY_RANGE, max_len: int, gso: bool = True,
                 seq: int = 0) -> bytes:
    """One ``NFQNL_MSG_CONFIG`` (acked) binding ``queue``: whole packets, ``max_len``, GSO, never fail-open.

    The kernel takes the command first (BIND creates the queue), then the
    parameters, the length and the flags; the mask names both flags, so
    FAIL_OPEN is cleared explicitly whatever the queue had before.
    """
    flags = NFQA_CFG_F_GSO if gso else 0
    attrs = (_attr(NFQA_CFG_CMD, struct.pack(">BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET))
             + _attr(NFQA_CFG_PARAMS, struct.pack(">IB", copy_range, NFQNL_COPY_PACKET))
             + _attr(NFQA_CFG_QUEUE_MAXLEN, _U32.pack(max_len))
             + _attr(NFQA_CFG_MASK, _U32.pack(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN))
             + _attr(NFQA_CFG_FLAGS, _U32.pack(flags)))
    return _message(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq)


def unbind_message(queue: int, seq: int = 0) -> bytes:
    attrs = _attr(NFQA_CFG_CMD, struct.pack(">BBH", NFQNL_CFG_CMD_UNBIND, 0, socket.AF_INET))
    return _message(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST, seq)


def verdict_header(queue_be: int, packet_id: int, verdict: int, payload_len: int = 0,
                   batch: bool = False) -> bytes:
    """The first :data:`VERDICT_SIZE` bytes of a verdict; with ``payload_len`` the
    ``NFQA_PAYLOAD`` attribute header follows, then the payload and its padding
    (see :func:`payload_parts`). ``queue_be``: the queue number in network order."""
    kind = NFQNL_MSG_VERDICT_BATCH if batch else NFQNL_MSG_VERDICT
    total = VERDICT_SIZE + (4 + payload_len + (-payload_len % 4) if payload_len else 0)
    return _VERDICT.pack(total, (NFNL_SUBSYS_QUEUE << 8) | kind, NLM_F_REQUEST, 0, 0,
                         socket.AF_UNSPEC, 0, queue_be, 12, NFQA_VERDICT_HDR, _htonl(verdict), _htonl(packet_id))


PADS = (b"", b"\0\0\0", b"\0\0", b"\0")
"""The padding after a payload of length ``n``: ``PADS[n & 3]``."""
PAYLOAD_VERDICT = struct.Struct("=IHHIIBBHHHIIHH")
"""A verdict's header up to and with its ``NFQA_PAYLOAD`` attribute header (see :func:`payload_parts`)."""
VERDICT_KIND = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT


def payload_parts(queue_be: int, packet_id: int, verdict: int, payload) -> tuple:
    """The buffers of a verdict carrying a new payload (for one gathered ``sendmsg``)."""
    n = len(payload)
    pad = PADS[n & 3]
    head = PAYLOAD_VERDICT.pack(VERDICT_SIZE + 4 + n + len(pad), VERDICT_KIND, NLM_F_REQUEST, 0, 0,
                                socket.AF_UNSPEC, 0, queue_be, 12, NFQA_VERDICT_HDR, _htonl(verdict),
                                _htonl(packet_id), 4 + n, NFQA_PAYLOAD)
    return (head, payload, pad) if pad else (head, payload)


class Queued(NamedTuple):
    """One packet message: where its payload is in the receive buffer, and what the kernel said of it."""

    packet_id: int
    indev: int
    skb_info: int
    cap_len: int
    """The packet's real length when the copy was cut short, else 0."""
    offset: int
    length: int


def parse_packet(buf, off: int, end: int) -> Optional[Queued]:
    """The ``NFQNL_MSG_PACKET`` at ``buf[off:end]`` (one whole message), or None if it is not one.

    Raises ``ValueError``/``struct.error`` if it is one but its attributes do not fit.
    """
    length, kind = struct.unpack_from("=IH", buf, off)
    if kind != PACKET_TYPE:
        return None
    if length > end - off:
        raise ValueError("netlink message longer than what was read")
    end = off + length
    pos = off + 20  # nlmsghdr + nfgenmsg
    packet_id = indev = info = cap_len = -1
    payload_off = payload_len = -1
    unpack_attr = _ATTR.unpack_from
    unpack_u32 = _U32.unpack_from
    while pos + 4 <= end:
        alen, atype = unpack_attr(buf, pos)
        if alen < 4 or pos + alen > end:
            raise ValueError("netlink attribute overruns its message")
        atype &= 0x3FFF  # NLA_F_NESTED / NLA_F_NET_BYTEORDER
        if atype == NFQA_PAYLOAD:
            payload_off, payload_len = pos + 4, alen - 4
        elif atype == NFQA_PACKET_HDR:
            packet_id = unpack_u32(buf, pos + 4)[0]
        elif atype == NFQA_IFINDEX_INDEV:
            indev = unpack_u32(buf, pos + 4)[0]
        elif atype == NFQA_SKB_INFO:
            info = unpack_u32(buf, pos + 4)[0]
        elif atype == NFQA_CAP_LEN:
            cap_len = unpack_u32(buf, pos + 4)[0]
        pos += (alen + 3) & ~3
    if packet_id < 0:
        raise ValueError("packet message without NFQA_PACKET_HDR")
    if payload_off < 0:
        payload_off = payload_len = 0
    return Queued(packet_id, max(indev, 0), max(info, 0), max(cap_len, 0), payload_off, payload_len)


_VALUE_AT = {NFQA_PACKET_HDR: "packet_id", NFQA_IFINDEX_INDEV: "indev", NFQA_SKB_INFO: "skb_info",
             NFQA_CAP_LEN: "cap_len"}


class Layout:
    """Where everything is in packet messages of one shape (the same attributes, in the same order).

    The kernel writes the attributes of a queue's packets in a fixed order, and
    which ones are there changes rarely (a timestamp once someone captures, a
    mark, ``NFQA_SKB_INFO`` for offloaded packets), so one ``struct`` call reads a
    whole message header once the layout is known: :meth:`parse`. Every
    attribute header is compared with the one the layout was made from, so a
    message of another shape is never misread: :meth:`parse` returns None and
    the caller parses it the slow way (:func:`parse_packet`) and learns its layout.
    """

    __slots__ = ("struct", "heads", "expected", "picks", "payload_head", "payload_off", "size")

    def __init__(self, attrs: list[tuple[int, int]]) -> None:
        """``attrs``: (length, type) of each attribute before the final ``NFQA_PAYLOAD``."""
        fmt = ["=IH14x"]  # nlmsghdr (length, type), nfgenmsg
        index = 2
        heads: list[int] = []
        picks: dict[str, int] = {}
        pos = 20
        for alen, atype in attrs:
            heads.append(index)
            index += 1
            name = _VALUE_AT.get(atype & 0x3FFF)
            padded = (alen + 3) & ~3
            if name is not None and alen >= 8:
                fmt.append(f"II{padded - 8}x")
                picks[name] = index
                index += 1
            else:
                fmt.append(f"I{padded - 4}x")
            pos += padded
        fmt.append("I")  # the payload's attribute header
        self.payload_head = index
        self.payload_off = pos + 4
        self.struct = struct.Struct("".join(fmt))
        self.size = self.struct.size
        self.heads = operator.itemgetter(*heads, 1) if heads else operator.itemgetter(1, 1)
        expected = [alen | (atype << 16) for alen, atype in attrs]
        self.expected = (*expected, PACKET_TYPE) if heads else (PACKET_TYPE, PACKET_TYPE)
        self.picks = (picks.get("packet_id"), picks.get("indev"), picks.get("skb_info"), picks.get("cap_len"))

    @classmethod
    def of(cls, buf, off: int, end: int) -> Optional["Layout"]:
        """The layout of the packet message at ``buf[off:end]`` (None: not a packet with a payload last)."""
        length, kind = struct.unpack_from("=IH", buf, off)
        if kind != PACKET_TYPE or length > end - off:
            return None
        end = off + length
        pos = off + 20
        attrs = []
        while pos + 4 <= end:
            alen, atype = _ATTR.unpack_from(buf, pos)
            if alen < 4 or pos + alen > end:
                return None
            if atype & 0x3FFF == NFQA_PAYLOAD:
                return cls(attrs) if pos + ((alen + 3) & ~3) >= end else None
            attrs.append((alen, atype))
            pos += (alen + 3) & ~3
        return None

    def parse(self, buf, off: int, end: int):
        """(packet_id, indev, skb_info, cap_len, payload offset, payload length), or None if
        the message at ``buf[off:end]`` does not have this layout."""
        if end - off < self.size:
            return None
        values = self.struct.unpack_from(buf, off)
        if self.heads(values) != self.expected or values[0] > end - off:
            return None
        head = values[self.payload_head]
        if head >> 16 & 0x3FFF != NFQA_PAYLOAD or self.payload_off - 4 + (head & 0xFFFF) > values[0]:
            return None
        pid, indev, info, cap = self.picks
        return (_ntohl(values[pid]), _ntohl(values[indev]) if indev else 0, _ntohl(values[info]) if info else 0,
                _ntohl(values[cap]) if cap else 0, off + self.payload_off, (head & 0xFFFF) - 4)


_ntohl = socket.ntohl


def packet_id_of(buf, off: int, end: int) -> Optional[int]:
    """The id of a packet message whose attributes :func:`parse_packet` could not take, if it is there."""
    pos = off + 20
    try:
        while pos + 4 <= end:
            alen, atype = _ATTR.unpack_from(buf, pos)
            if alen < 4:
                return None
            if atype & 0x3FFF == NFQA_PACKET_HDR and pos + 8 <= end:
                return _U32.unpack_from(buf, pos + 4)[0]
            pos += (alen + 3) & ~3
    except struct.error:
        return None
    return None


def error_of(buf, off: int) -> int:
    """The (negative) errno of an ``NLMSG_ERROR`` message; 0 for an ack."""
    return _ERRNO.unpack_from(buf, off + 16)[0]


def messages(buf, off: int, end: int):
    """(offset, length, type) of each netlink message in ``buf[off:end]``."""
    while off + 16 <= end:
        length, kind = struct.unpack_from("=IH", buf, off)
        if length < 16 or off + length > end:
            return
        yield off, length, kind
        off += (length + 3) & ~3
