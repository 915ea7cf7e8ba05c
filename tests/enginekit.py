"""Shared helpers for engine tests: addresses, policies, packet builders, a tiny harness.

Theory of operation
-------------------
``Nat`` wraps an :class:`~natlab.engine.Engine` with a manual clock (``nat.now``,
``nat.at(t)``) and two doors: ``nat.out(packet)`` sends a packet from the inside,
``nat.into(packet)`` from the outside. ``translated_out``/``translated_in`` assert a
Forward whose bytes have valid checksums (``natlab.packet.verify.problems``) and
return the rewritten packet parsed. Packets are built with ``natlab.packet.build``
so the tests read as "udp from A:5000 to Y1:80".

Test modules live in tests/unit and tests/property, which are not packages, so they
put tests/ on ``sys.path`` before importing this module.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Optional, Sequence

from natlab.engine import (
    Drop,
    DropReason,
    Engine,
    EventKind,
    Forward,
    Hairpin,
    Policy,
    Side,
)
from natlab.engine.views import MappingView
from natlab.packet import TCPFlags, build, parse_packet, problems
from natlab.packet.headers import Packet, to_str

# Inside hosts, remotes (outside) and the NAT's external pool.
A, B, C = "192.168.1.2", "192.168.1.3", "192.168.1.4"
Y1, Y2, Y3 = "198.51.100.1", "198.51.100.2", "198.51.100.3"
ROUTER = "198.51.100.254"
X1 = "203.0.113.1"
POOL = (X1,)
POOL3 = (X1, "203.0.113.2", "203.0.113.3")
SEED = 4787

SYN, ACK, FIN, RST = TCPFlags.SYN, TCPFlags.ACK, TCPFlags.FIN, TCPFlags.RST
SYNACK = SYN | ACK

udp = build.udp
tcp = build.tcp
icmp_echo = build.icmp_echo
icmp_error = build.icmp_error
fragment = build.fragment


def policy(**changes: Any) -> Policy:
    """``Policy()`` with top-level fields changed; nested sections as dicts are merged:
    ``policy(timeouts={"udp": 120})``."""
    base = Policy()
    merged = {}
    for name, value in changes.items():
        if isinstance(value, dict):
            value = dataclasses.replace(getattr(base, name), **value)
        merged[name] = value
    return dataclasses.replace(base, **merged)


def engine(pol: Optional[Policy] = None, pool: Sequence[str] = POOL, seed: int = SEED) -> Engine:
    return Engine(pol if pol is not None else Policy(), pool, random.Random(seed))


def valid(data: bytes) -> Packet:
    """Parse ``data``, asserting every checksum and length is right."""
    found = problems(bytes(data))
    assert found == [], f"bad rewritten packet: {found}"
    return parse_packet(bytes(data))


def src_of(data: bytes) -> tuple[str, int]:
    """(address, port) of a packet's source; the ICMP echo identifier as the port."""
    p = parse_packet(bytes(data))
    return to_str(p.ip.src), _port(p, source=True)


def dst_of(data: bytes) -> tuple[str, int]:
    p = parse_packet(bytes(data))
    return to_str(p.ip.dst), _port(p, source=False)


def _port(p: Packet, source: bool) -> int:
    if p.l4 is None:
        return 0
    if hasattr(p.l4, "sport"):
        return p.l4.sport if source else p.l4.dport
    return p.l4.ident  # ICMP echo


def quoted(data: bytes) -> Packet:
    """The datagram an ICMP error quotes (possibly cut short), parsed leniently."""
    from natlab.packet.headers import IPv4Header, parse_l4

    body = parse_packet(bytes(data)).payload
    inner, offset = IPv4Header.parse(body, quoted=True)
    rest = body[offset:]
    l4, n = parse_l4(inner.proto, rest[:20] if inner.proto == 6 and len(rest) < 20 else rest)
    return Packet(inner, l4, rest[n:])


def kinds(events) -> list[EventKind]:
    return [e.kind for e in events]


class Nat:
    """An engine with a manual clock and two doors (inside, outside)."""

    def __init__(self, pol: Optional[Policy] = None, pool: Sequence[str] = POOL, seed: int = SEED) -> None:
        self.engine = engine(pol, pool, seed)
        self.now = 0.0

    def at(self, t: float) -> "Nat":
        assert t >= self.now, "time only moves forward"
        self.now = t
        return self

    def out(self, packet: bytes):
        return self.engine.process(packet, Side.INSIDE, self.now)

    def into(self, packet: bytes):
        return self.engine.process(packet, Side.OUTSIDE, self.now)

    def translated_out(self, packet: bytes) -> bytes:
        v = self.out(packet)
        assert type(v) is Forward, f"expected Forward, got {v!r}"
        valid(v.data)
        return bytes(v.data)

    def translated_in(self, packet: bytes) -> bytes:
        v = self.into(packet)
        assert type(v) is Forward, f"expected Forward, got {v!r}"
        valid(v.data)
        return bytes(v.data)

    def hairpinned(self, packet: bytes) -> bytes:
        v = self.out(packet)
        assert type(v) is Hairpin, f"expected Hairpin, got {v!r}"
        valid(v.data)
        return bytes(v.data)

    def dropped(self, packet: bytes, side: Side = Side.OUTSIDE) -> Drop:
        v = self.engine.process(packet, side, self.now)
        assert type(v) is Drop, f"expected Drop, got {v!r}"
        return v

    def external_of(self, packet: bytes) -> tuple[str, int]:
        """Send ``packet`` out; the (X', x') it left from."""
        return src_of(self.translated_out(packet))

    def mappings(self) -> tuple[MappingView, ...]:
        return self.engine.mappings(self.now)

    def drops(self, reason: DropReason) -> int:
        return self.engine.counters.snapshot()["drops"][reason.value]

    def expire(self):
        return self.engine.expire(self.now)


def udp_round_trip(nat: Nat, x: str, xp: int, y: str, yp: int) -> tuple[str, int]:
    """Send X:x -> Y:y, answer Y:y -> X':x', check the answer reaches X:x; returns X':x'."""
    ext = nat.external_of(udp(x, xp, y, yp, b"out"))
    back = nat.translated_in(udp(y, yp, ext[0], ext[1], b"back"))
    assert dst_of(back) == (x, xp)
    assert src_of(back) == (y, yp)
    return ext
