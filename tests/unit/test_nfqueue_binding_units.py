"""The NFQUEUE binding's pure parts, without root: wire format, verdict batching,
partial checksums around the engine, software segmentation."""

from __future__ import annotations

import random
import socket
import struct

import pytest
from enginekit import SYN, A, X1, Y1, engine

from natlab.datapaths.nfqueue import nfnetlink as nfq
from natlab.datapaths.nfqueue import partial
from natlab.datapaths.nfqueue.segment import tcp_segments
from natlab.datapaths.nfqueue.verdicts import Verdicts
from natlab.engine.types import Side
from natlab.engine.verdicts import Forward
from natlab.packet import build
from natlab.packet.checksum import fold, pseudo_header_sum
from natlab.packet.headers import TCPFlags
from natlab.packet.verify import problems

ACK_PSH = TCPFlags.ACK | TCPFlags.PSH


def _partial(packet: bytes) -> bytearray:
    """``packet`` as an offloading sender hands it over: the L4 field holds the pseudo-header sum."""
    buf = bytearray(packet)
    ihl = (buf[0] & 15) * 4
    at = ihl + (16 if buf[9] == 6 else 6)
    total = int.from_bytes(buf[2:4], "big")
    src, dst = (int.from_bytes(buf[i:i + 4], "big") for i in (12, 16))
    buf[at:at + 2] = fold(pseudo_header_sum(src, dst, buf[9], total - ihl)).to_bytes(2, "big")
    return buf


def _attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _packet_message(packet_id: int, payload: bytes, *, info: int | None = 1, mark: bool = False) -> bytes:
    attrs = _attr(nfq.NFQA_PACKET_HDR, struct.pack(">IHB", packet_id, 0x0800, 0))
    attrs += _attr(nfq.NFQA_IFINDEX_INDEV, struct.pack(">I", 3))
    if mark:
        attrs += _attr(nfq.NFQA_MARK, struct.pack(">I", 0x4E4C))
    attrs += _attr(9, bytes(12))  # NFQA_HWADDR
    if info is not None:
        attrs += _attr(nfq.NFQA_SKB_INFO, struct.pack(">I", info))
    attrs += _attr(nfq.NFQA_PAYLOAD, payload)
    body = struct.pack("=BBH", socket.AF_INET, 0, socket.htons(1)) + attrs
    return struct.pack("=IHHII", 16 + len(body), nfq.PACKET_TYPE, 0, 0, 0) + body


# --- wire format --------------------------------------------------------------------------

def test_the_bind_message_asks_for_gso_whole_packets_and_clears_fail_open():
    message = nfq.bind_message(4, max_len=4096, seq=9)
    length, kind, flags, seq = struct.unpack_from("=IHHI", message)
    assert length == len(message) and kind == 0x0302 and flags == nfq.NLM_F_REQUEST | nfq.NLM_F_ACK and seq == 9
    attrs, pos = {}, 20
    while pos < len(message):
        alen, atype = struct.unpack_from("=HH", message, pos)
        attrs[atype] = message[pos + 4:pos + alen]
        pos += (alen + 3) & ~3
    assert attrs[nfq.NFQA_CFG_CMD][0] == nfq.NFQNL_CFG_CMD_BIND
    assert attrs[nfq.NFQA_CFG_PARAMS] == struct.pack(">IB", 0xFFFF, nfq.NFQNL_COPY_PACKET)
    assert struct.unpack(">I", attrs[nfq.NFQA_CFG_QUEUE_MAXLEN]) == (4096,)
    mask, = struct.unpack(">I", attrs[nfq.NFQA_CFG_MASK])
    value, = struct.unpack(">I", attrs[nfq.NFQA_CFG_FLAGS])
    assert mask & nfq.NFQA_CFG_F_FAIL_OPEN and not value & nfq.NFQA_CFG_F_FAIL_OPEN  # fail closed
    assert mask & value & nfq.NFQA_CFG_F_GSO


def test_a_packet_message_parses_the_same_by_layout_and_attribute_by_attribute():
    payload = build.udp(A, 5000, Y1, 7000, b"hello")
    message = _packet_message(77, payload)
    slow = nfq.parse_packet(message, 0, len(message))
    layout = nfq.Layout.of(message, 0, len(message))
    assert tuple(slow) == layout.parse(message, 0, len(message)) == (77, 3, 1, 0, len(message) - len(payload)
                                                                      - (-len(payload) % 4), len(payload))
    assert message[slow.offset:slow.offset + slow.length] == payload


@pytest.mark.parametrize("other", [dict(info=None), dict(mark=True)], ids=["no-skb-info", "a-mark-too"])
def test_a_message_of_another_shape_is_never_read_by_the_old_layout(other):
    payload = build.udp(A, 5000, Y1, 7000, b"hello")
    first = _packet_message(1, payload)
    layout = nfq.Layout.of(first, 0, len(first))
    second = _packet_message(2, payload, **other)
    assert layout.parse(second, 0, len(second)) is None
    assert nfq.parse_packet(second, 0, len(second)).packet_id == 2


def test_a_message_whose_attribute_overruns_it_is_refused_but_its_id_is_found():
    message = bytearray(_packet_message(5, b"x" * 40))
    struct.pack_into("=H", message, len(message) - 44, 400)  # the payload attribute claims 400 bytes
    with pytest.raises(ValueError):
        nfq.parse_packet(message, 0, len(message))
    assert nfq.packet_id_of(message, 0, len(message)) == 5


# --- verdicts -------------------------------------------------------------------------------

def _decoded(messages: list[tuple]) -> list[tuple[str, int, int, int]]:
    out = []
    for parts in messages:
        raw = b"".join(parts)
        length, kind = struct.unpack_from("=IH", raw)
        assert length == len(raw)
        verdict, packet_id = struct.unpack_from(">II", raw, 24)
        name = {0x0301: "verdict", 0x0303: "batch"}[kind]
        out.append((name, packet_id, verdict, length - nfq.VERDICT_SIZE))
    return out


def test_payload_verdicts_go_first_then_the_others_as_runs_in_id_order():
    verdicts = Verdicts(socket.htons(1))
    for packet_id, verdict in ((1, nfq.NF_ACCEPT), (2, nfq.NF_ACCEPT), (4, nfq.NF_DROP), (5, nfq.NF_DROP),
                               (6, nfq.NF_ACCEPT)):
        verdicts.give(packet_id, verdict)
    verdicts.give(3, nfq.NF_ACCEPT, b"\x45" + bytes(40))
    assert verdicts.count == 6 and verdicts.batched() == 2
    assert _decoded(verdicts.messages()) == [
        ("verdict", 3, nfq.NF_ACCEPT, 4 + 44),  # the payload attribute, padded to 4 bytes
        ("batch", 2, nfq.NF_ACCEPT, 0), ("batch", 5, nfq.NF_DROP, 0), ("batch", 6, nfq.NF_ACCEPT, 0)]


def test_unbatched_verdicts_go_one_message_each():
    verdicts = Verdicts(socket.htons(1))
    for packet_id in (1, 2, 3):
        verdicts.give(packet_id, nfq.NF_ACCEPT)
    verdicts.unbatched()
    assert [m[:2] for m in _decoded(verdicts.messages())] == [("verdict", 1), ("verdict", 2), ("verdict", 3)]
    assert verdicts.batched() == 0


# --- partial checksums around the engine -------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 7, 64, 1371, 1372])
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_completing_a_partial_checksum_gives_the_full_rfc_1071_checksum(proto, size):
    data = random.Random(size).randbytes(size)
    whole = (build.udp(A, 5000, Y1, 7000, data) if proto == "udp"
             else build.tcp(A, 5000, Y1, 7000, flags=ACK_PSH, seq=9, payload=data))
    buf = _partial(whole)
    assert partial.complete(buf)
    assert bytes(buf) == whole or (proto == "tcp" and problems(bytes(buf)) == [])
    assert problems(bytes(buf)) == []


def test_a_udp_checksum_that_sums_to_zero_is_sent_as_ffff():
    # A payload word equal to the checksum of a zero word makes the sum 0xFFFF: checksum 0.
    payload = build.udp(A, 5000, Y1, 7000, b"\0\0")[26:28]
    whole = build.udp(A, 5000, Y1, 7000, payload)
    assert whole[26:28] == b"\xff\xff"
    buf = _partial(whole)
    assert partial.complete(buf) and buf[26:28] == b"\xff\xff"


def test_fragments_and_other_protocols_are_left_alone():
    first, _second = build.fragment(build.udp(A, 5000, Y1, 7000, bytes(3000)), 1500)[:2]
    echo = build.icmp_echo(A, Y1, 1, 1)
    for packet in (first, echo):
        buf = bytearray(packet)
        assert not partial.complete(buf) and bytes(buf) == packet


def test_the_engine_rewrites_a_completed_partial_packet_exactly():
    nat = engine()
    whole = build.udp(A, 5000, Y1, 7000, b"payload")
    buf = _partial(whole)
    partial.complete(buf)
    verdict = nat.process(bytes(buf), Side.INSIDE, 0.0)
    assert type(verdict) is Forward and problems(bytes(verdict.data)) == []
    assert bytes(verdict.data[12:16]) == socket.inet_aton(X1)


def test_a_super_packet_gets_the_pseudo_header_sum_of_its_new_addresses():
    nat = engine()
    nat.process(build.tcp(A, 5000, Y1, 80, flags=SYN, seq=1), Side.INSIDE, 0.0)
    big = _partial(build.tcp(A, 5000, Y1, 80, flags=ACK_PSH, seq=2, payload=bytes(60000)))
    out = bytearray(nat.process(bytes(big), Side.INSIDE, 0.1).data)
    assert partial.pseudo_header(out)
    assert out == _partial(bytes(out))  # the form GSO segmentation sums from


# --- software segmentation for the raw socket -----------------------------------------------------

def test_a_super_packet_is_cut_into_mtu_sized_segments_that_each_verify():
    data = random.Random(1).randbytes(10_000)
    big = build.tcp(X1, 4000, A, 5000, flags=ACK_PSH | TCPFlags.FIN | TCPFlags.CWR, seq=0xFFFFF000,
                    payload=data, ident=100, df=True)
    segments = tcp_segments(_partial(big), 1500)
    assert segments is not None and all(len(s) <= 1500 for s in segments) and len(segments) == 7
    assert b"".join(bytes(s[40:]) for s in segments) == data
    for i, seg in enumerate(segments):
        assert problems(bytes(seg)) == [], i
        seq, = struct.unpack_from(">I", seg, 24)
        assert seq == (0xFFFFF000 + 1460 * i) & 0xFFFFFFFF and int.from_bytes(seg[4:6], "big") == 100 + i
        flags = seg[33]
        assert bool(flags & TCPFlags.FIN) == bool(flags & TCPFlags.PSH) == (i == len(segments) - 1)
        assert bool(flags & TCPFlags.CWR) == (i == 0)


def test_what_is_not_tcp_or_cannot_be_cut_is_not_segmented():
    assert tcp_segments(build.udp(A, 5000, Y1, 7000, bytes(3000)), 1500) is None
    assert tcp_segments(build.tcp(A, 5000, Y1, 80, flags=ACK_PSH, payload=bytes(100)), 40) is None
