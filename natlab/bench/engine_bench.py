"""Engine throughput, measured beside a bare struct-rewrite loop in the same run.

Not a test: it prints figures. The baseline does the least work any NAT must do
per packet (copy, read the flow, write a new address and port, fix both
checksums incrementally); the engine adds the lookup, timers and counters.
"""

from __future__ import annotations

import gc
import random
import struct
import time
import tracemalloc
from dataclasses import dataclass
from typing import Callable

from natlab.engine import Engine, Policy, Side
from natlab.engine.checksum_deltas import add_to_csum, add_to_udp_csum
from natlab.packet.checksum import checksum, delta16, delta32, fold, pseudo_header_sum

_IPV4 = struct.Struct("!BBHHHBBHII")


def udp_packet(src: int, sport: int, dst: int, dport: int, payload: bytes = b"x" * 64) -> bytes:
    """A valid IPv4/UDP packet (no scapy: the benchmark must not need it)."""
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = checksum(udp, pseudo_header_sum(src, dst, 17, length)) or 0xFFFF
    udp = udp[:6] + csum.to_bytes(2, "big") + udp[8:]
    ip = bytearray(_IPV4.pack(0x45, 0, 20 + length, 0, 0, 64, 17, 0, src, dst))
    ip[10:12] = checksum(ip).to_bytes(2, "big")
    return bytes(ip) + udp


def bare_rewrite(packet: bytes, new_addr: int, new_port: int) -> bytearray:
    """The baseline: a source rewrite with RFC 1624 checksum updates, no NAT logic."""
    buf = bytearray(packet)
    ihl = (buf[0] & 15) << 2
    old_addr = int.from_bytes(buf[12:16], "big")
    old_port = (buf[ihl] << 8) | buf[ihl + 1]
    d_ip = fold(delta32(old_addr, new_addr))
    buf[12:16] = new_addr.to_bytes(4, "big")
    add_to_csum(buf, 10, d_ip)
    buf[ihl] = new_port >> 8
    buf[ihl + 1] = new_port & 0xFF
    add_to_udp_csum(buf, ihl + 6, fold(d_ip + delta16(old_port, new_port)))
    return buf


@dataclass
class Figures:
    bare_pps: float
    engine_out_pps: float
    engine_in_pps: float
    new_mappings_per_s: float
    bytes_per_mapping: float
    flows: int


def _rate(fn: Callable[[], int], seconds: float) -> float:
    """Calls per second of ``fn`` (which does a batch and returns its size) over ``seconds``."""
    done = 0
    start = time.perf_counter()
    while True:
        done += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def run(flows: int = 1000, seconds: float = 1.0, seed: int = 1) -> Figures:
    """Measure everything once; ``seconds`` per figure."""
    ext = int.from_bytes(bytes([203, 0, 113, 1]), "big")
    inside = [0xC0A80100 + 2 + (i % 200) for i in range(flows)]
    remote = 0xC6336409
    outs = [udp_packet(inside[i], 10000 + i, remote, 3478) for i in range(flows)]
    engine = Engine(Policy(), ["203.0.113.1"], random.Random(seed))
    now = 1.0
    translated = [engine.process(p, Side.INSIDE, now).data for p in outs]
    ins = [udp_packet(remote, 3478, ext, (t[20] << 8) | t[21]) for t in translated]
    gc.collect()

    def bare() -> int:
        for p in outs:
            bare_rewrite(p, ext, 40000)
        return flows

    def out() -> int:
        process = engine.process
        for p in outs:
            process(p, Side.INSIDE, now)
        return flows

    def inbound() -> int:
        process = engine.process
        for p in ins:
            process(p, Side.OUTSIDE, now)
        return flows

    bare_pps = _rate(bare, seconds)
    out_pps = _rate(out, seconds)
    in_pps = _rate(inbound, seconds)
    new_rate, per_mapping = _new_mappings(seconds, seed)
    return Figures(bare_pps, out_pps, in_pps, new_rate, per_mapping, flows)


def _new_mappings(seconds: float, seed: int) -> tuple[float, float]:
    """New mappings per second, and bytes of memory each one holds."""
    remote = 0xC6336409
    batch = 20000
    packets = [udp_packet(0x0A000000 + (i >> 12), 1024 + (i & 0xFFF) * 8, remote, 3478) for i in range(batch)]
    made = 0
    elapsed = 0.0
    while elapsed < seconds:
        engine = Engine(Policy(), ["203.0.113.1", "203.0.113.2"], random.Random(seed))
        start = time.perf_counter()
        for p in packets:
            engine.process(p, Side.INSIDE, 1.0)
        elapsed += time.perf_counter() - start
        made += engine.counters.mappings_created
    engine = Engine(Policy(), ["203.0.113.1", "203.0.113.2"], random.Random(seed))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for p in packets:
        engine.process(p, Side.INSIDE, 1.0)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return made / elapsed, (after - before) / max(engine.counters.mappings_created, 1)
