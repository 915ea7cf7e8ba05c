"""The :class:`~natlab.realisers.base.Driver` for the in-memory twin (no root, a manual clock).

Theory of operation
-------------------
A :class:`MemoryDriver` holds a :class:`natlab.realisers.memory.network.MemNet` built from the
topology. A probe is what the netns probe programs do, played out in memory
at once: the receiver binds (UDP) or listens (TCP) on its port, the sender
binds its source port and sends; the host stacks answer as a kernel would
(port unreachable, RST, SYN-ACK, echo reply) and the result reads the
receiver's and the sender's inboxes. Where a packet was dropped, ``detail``
is the engine's drop reason ("filtered", "no-mapping", ...); an ICMP port
unreachable or a RST back is "refused", as on netns.

Gateway operations are control requests to each NAT's
:class:`~natlab.gateway.service.Gateway` (the service a netns gateway process
runs), so mapping rows, events, counters and ``set``/``configure`` behave as on
netns by construction; each gateway has its own clock (``advance`` moves one,
``sleep`` moves all). Running programs is the one thing memory cannot do: it
raises :class:`Unsupported`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from natlab.engine.types import to_str
from natlab.errors import ConfigError
from natlab.realisers.memory.realiser import MemoryRealiser
from natlab.realisers.memory.network import Delivered, Dropped, MemNet, Outcome
from natlab.packet import build
from natlab.packet.headers import PROTO_ICMP, PROTO_UDP, parse_packet
from natlab.realisers.base import PROTOCOLS, Probe, ProbeResult, RunResult, Unsupported
from natlab.portmap.ssdp import PORT as SSDP_PORT

__all__ = ["MemNetTransport", "MemoryDriver"]

PROTO_GRE = 47
GRE_HEADER = b"\x00\x00\x08\x00"
"""A GRE header (RFC 2784) with no options, carrying IPv4 (what the netns probe sends)."""
EPHEMERAL = (32768, 60999)
"""Linux's default ip_local_port_range: where a host picks a source port."""
_NO_PROGRAMS = dict(what="the memory backend cannot run programs", hint="run this on the netns backend")


def _topology(source: Any) -> Any:
    from natlab.topology.load import from_data, load

    if isinstance(source, (str, Path)):
        return load(source)
    if isinstance(source, dict):
        return from_data(source)
    return source


class MemoryDriver:
    """Drive the in-memory twin of ``topology`` (a Topology, a path or a dict); ``seed``
    (default: the topology's) fixes every port a NAT or host picks."""

    backend = MemoryRealiser.name

    def __init__(self, topology: Union[Any, str, Path, dict], seed: Optional[int] = None) -> None:
        self.topology = _topology(topology)
        self.seed = self.topology.seed if seed is None else seed
        self.reset()

    @property
    def name(self) -> str:
        """The lab's name (the topology's), as a netns lab has one."""
        return self.topology.name

    def reset(self) -> None:
        """Start over from the topology: fresh engines, clocks at zero, no events."""
        self.net = MemNet.from_topology(self.topology, self.seed)
        self._ports = random.Random(self.seed)

    # -- names ---------------------------------------------------------------------
    def hosts(self) -> list[str]:
        return list(self.net.hosts)

    def gateways(self) -> list[str]:
        return list(self.net.nats)

    def addresses(self, node: str) -> list[str]:
        if node in self.net.nats:
            return list(self.net.gateway(node).pool)
        return self.net.addresses(self._host(node))

    def _host(self, name: str) -> str:
        if name not in self.net.hosts:
            raise ConfigError(f"no host {name!r} in lab {self.net.name!r}", got=name,
                              hint=f"hosts: {', '.join(self.net.hosts)}")
        return name

    def _nat(self, name: str) -> Any:
        if name not in self.net.nats:
            raise ConfigError(f"no gateway {name!r} in lab {self.net.name!r}", got=name,
                              hint=f"gateways: {', '.join(self.net.nats)}")
        return self.net.nat(name)

    # -- probes ----------------------------------------------------------------------
    def probe(self, probe: Probe) -> ProbeResult:
        if probe.proto not in PROTOCOLS:
            raise ConfigError("unknown probe protocol", got=probe.proto, hint=f"one of {', '.join(PROTOCOLS)}")
        self._host(probe.src)
        if probe.receiver is not None:
            self._host(probe.receiver)
        marks = {name: nat.seq for name, nat in self.net.nats.items()}
        for name in self.net.hosts:
            self.net.stack(name).inbox.clear()
        run = {"udp": self._udp, "tcp": self._tcp, "icmp": self._icmp, "gre": self._gre}[probe.proto]
        result = run(probe, probe.payload.encode())
        events = tuple(dict(e) for name, nat in self.net.nats.items() for e in nat.events if e["seq"] > marks[name])
        if not result.detail and not (result.delivered and (result.replied or not probe.reply)):
            result = _replace(result, detail=_last_drop(events) or "timeout")
        return _replace(result, events=events)

    def _source_port(self, host: str, proto: str) -> int:
        stack = self.net.stack(host)
        taken = stack.udp_bound if proto == "udp" else {c.lport for c in stack.conns.values()}
        while True:
            port = self._ports.randint(*EPHEMERAL)
            if port not in taken:
                return port

    def _udp(self, probe: Probe, token: bytes) -> ProbeResult:
        rx, tx = (self.net.stack(probe.receiver) if probe.receiver else None), self.net.stack(probe.src)
        sport = probe.sport or self._source_port(probe.src, "udp")
        opened = []
        for stack, port in ((rx, probe.port_at_receiver), (tx, sport)):
            if stack is not None and port not in stack.udp_bound:
                stack.bind_udp(port)
                opened.append((stack, port))
        try:
            out = self.net.send_udp(probe.src, sport, probe.dst, probe.dport, token)
            got = _udp_in(rx.inbox, probe.port_at_receiver, token) if rx is not None else None
            result = ProbeResult(probe, delivered=got is not None, seen=got, sport=sport,
                                 replied=False if probe.reply else None, detail=_why(out, tx.inbox, probe))
            if got is None or not probe.reply:
                return result
            addr, port = got.rsplit(":", 1)
            back = self.net.send_udp(probe.receiver, probe.port_at_receiver, addr, int(port),
                                     f"seen {got} ".encode() + token)
            answer = _udp_in(tx.inbox, sport, token)
            return _replace(result, replied=answer is not None, reply_from=answer,
                            detail="" if answer else back.reason if isinstance(back, Dropped) else "")
        finally:
            for stack, port in opened:
                stack.close_port("udp", port)

    def _tcp(self, probe: Probe, token: bytes) -> ProbeResult:
        rx, tx = (self.net.stack(probe.receiver) if probe.receiver else None), self.net.stack(probe.src)
        sport = probe.sport or self._source_port(probe.src, "tcp")
        opened = rx is not None and probe.port_at_receiver not in rx.tcp_listening
        if opened:
            rx.listen_tcp(probe.port_at_receiver)
        if rx is not None:
            rx.accepted.clear()
        try:
            conn, out = self.net.connect_tcp(probe.src, sport, probe.dst, probe.dport)
            if conn.state == "established":
                self.net.send(probe.src, tx.send_data(conn, token))
            accepted = next((c for c in (rx.accepted if rx else []) if c.lport == probe.port_at_receiver), None)
            seen = accepted.remote_label if accepted else None
            detail = "refused" if conn.state == "refused" else _why(out, tx.inbox, probe)
            replied = None
            if probe.reply:
                if accepted is not None and accepted.state == "established":
                    self.net.send(probe.receiver, rx.send_data(accepted, f"seen {seen}".encode()))
                replied = bool(conn.received)
            fin = None if probe.keep_open else tx.close(conn)  # the sender closes; the receiver's stack too
            if fin is not None:
                self.net.send(probe.src, fin)
            return ProbeResult(probe, delivered=accepted is not None, seen=seen, sport=sport, replied=replied,
                               reply_from=f"{probe.dst}:{probe.dport}" if replied else None, detail=detail)
        finally:
            if opened:
                rx.close_port("tcp", probe.port_at_receiver)

    def _icmp(self, probe: Probe, token: bytes) -> ProbeResult:
        rx, tx = (self.net.stack(probe.receiver) if probe.receiver else None), self.net.stack(probe.src)
        ident = probe.sport or self._ports.randint(1, 0xFFFF)
        out = self.net.ping(probe.src, probe.dst, ident, 1, token)
        seen = _echo_in(rx.inbox, 8, None, token) if rx is not None else None
        answer = _echo_in(tx.inbox, 0, ident, token)
        return ProbeResult(probe, delivered=seen is not None, seen=seen, sport=ident,
                           replied=(answer is not None) if probe.reply else None,
                           reply_from=answer if probe.reply else None, detail=_why(out, tx.inbox, probe))

    def _gre(self, probe: Probe, token: bytes) -> ProbeResult:
        rx, tx = (self.net.stack(probe.receiver) if probe.receiver else None), self.net.stack(probe.src)
        opened = rx is not None and PROTO_GRE not in rx.raw_open
        if opened:
            rx.raw_open.add(PROTO_GRE)  # the listener's raw socket: the kernel sends no error
        try:
            src = self.net.address(probe.src)
            out = self.net.send(probe.src, build.ipv4(src, probe.dst, PROTO_GRE, GRE_HEADER + token))
            seen = _raw_in(rx.inbox, PROTO_GRE, token) if rx is not None else None
            answer = None
            if seen is not None and probe.reply:
                self.net.send(probe.receiver, build.ipv4(self.net.address(probe.receiver), seen, PROTO_GRE,
                                                         GRE_HEADER + f"seen {seen} ".encode() + token))
                answer = _raw_in(tx.inbox, PROTO_GRE, token)
            return ProbeResult(probe, delivered=seen is not None, seen=seen, sport=0,
                               replied=(answer is not None) if probe.reply else None,
                               reply_from=answer, detail=_why(out, tx.inbox, probe))
        finally:
            if opened:
                rx.raw_open.discard(PROTO_GRE)

    # -- programs: not in memory -------------------------------------------------------
    def run(self, host: str, command: Sequence[str], timeout: float) -> RunResult:
        raise Unsupported(**_NO_PROGRAMS)

    def spawn(self, host: str, command: Sequence[str], name: str) -> None:
        raise Unsupported(**_NO_PROGRAMS)

    def spawned_output(self, name: str) -> RunResult:
        raise Unsupported(**_NO_PROGRAMS)

    def stop_spawned(self) -> dict[str, RunResult]:
        """Nothing to stop (``spawn`` never starts anything here), so a runner's cleanup just works."""
        return {}

    # -- gateways: control requests, as a netns gateway's socket takes them ------------
    def _request(self, gateway: str, op: str, **args: Any) -> dict[str, Any]:
        self._nat(gateway)
        return self.net.request(gateway, {"op": op, **args})

    def mappings(self, gateway: str) -> list[dict[str, Any]]:
        """Rows as the control socket's ``mappings`` op: ``MappingView.to_dict()`` plus ``expires_in``."""
        rows = self._request(gateway, "mappings")["mappings"]
        return json.loads(json.dumps(rows))  # as they come off the socket: lists, not tuples

    def events(self, gateway: str, limit: int = 20) -> list[dict[str, Any]]:
        return [dict(e) for e in self._request(gateway, "events", limit=limit)["events"]]

    def counters(self, gateway: str) -> dict[str, Any]:
        return self._request(gateway, "counters")["counters"]

    def set(self, gateway: str, assignments: Sequence[str]) -> None:
        self._request(gateway, "set", assignments=list(assignments))

    def configure(self, gateway: str, behaviour: str, overrides: Optional[dict[str, Any]] = None) -> None:
        self._request(gateway, "configure", behaviour=behaviour, overrides=dict(overrides or {}))

    def advance(self, gateway: str, seconds: float) -> None:
        self._request(gateway, "advance", seconds=seconds)

    def reboot(self, gateway: str) -> None:
        self._request(gateway, "flush")

    def set_pool(self, gateway: str, pool: Sequence[str]) -> None:
        self._request(gateway, "set-pool", pool=list(pool))

    def map_port(self, host: str, request: Any) -> Any:
        """natlab's port mapping client (:mod:`natlab.portmap.client`) on the in-memory network."""
        from natlab.portmap.client import request as ask

        self._host(host)
        realm = self.net.hosts[host].realm
        if not request.gateway and realm is not None and self.net.nat(realm).portmap is not None:
            request = _replace(request, gateway=to_str(self.net.nat(realm).portmap.address))
        transport = MemNetTransport(self.net, host, lambda proto: self._source_port(host, proto))
        return ask(request, transport, self.net.address(host))

    def sleep(self, seconds: float) -> None:
        self.net.advance(seconds)

    def close(self) -> None:
        """Nothing to take down."""


class MemNetTransport:
    """The port mapping client's UDP and HTTP exchanges over a MemNet, from ``host``
    (``source_port(proto)`` picks each exchange's port). NAT-PMP, PCP and HTTP answers come
    at once (the clock does not move), so nothing is retransmitted; SSDP answers come after
    their MX delay, so a search moves the manual clock on to each answer due within
    ``timeout``, as a real client waits for them."""

    def __init__(self, net: MemNet, host: str, source_port: Any) -> None:
        self.net, self.host, self.source_port = net, host, source_port

    def udp(self, server: str, port: int, payload: bytes, timeout: float,
            retransmit: Sequence[float] = ()) -> list[tuple[str, bytes]]:
        stack = self.net.stack(self.host)
        sport = self.source_port("udp")
        stack.bind_udp(sport)
        try:
            self.net.send_udp(self.host, sport, server, port, payload)
            got = [(d.src, d.payload) for d in self.net.recv(self.host, sport)]
            if port == SSDP_PORT:
                got += self._wait_for_answers(sport, timeout)
            return got
        finally:
            stack.close_port("udp", sport)

    def _wait_for_answers(self, sport: int, timeout: float) -> list[tuple[str, bytes]]:
        """Advance the clock to each port mapping server's next send within ``timeout``; what came."""
        got: list[tuple[str, bytes]] = []
        waited = 0.0
        for _ in range(256):  # at most one step per answer (a search gets at most 9) or announcement
            steps = [due - nat.gateway.now() for nat in self.net.nats.values() if nat.portmap is not None
                     for due in (nat.portmap.shell.next_deadline(),) if due is not None]
            step = max(0.0, min(steps, default=timeout + 1))
            if waited + step > timeout:
                break
            self.net.advance(step)
            waited += step
            got += [(d.src, d.payload) for d in self.net.recv(self.host, sport)]
        return got

    def http(self, server: str, port: int, request: bytes, timeout: float) -> bytes:
        stack = self.net.stack(self.host)
        conn, _ = self.net.connect_tcp(self.host, self.source_port("tcp"), server, port)
        if conn.state != "established":
            return b""
        self.net.send(self.host, stack.send_data(conn, request))
        fin = stack.close(conn)
        if fin is not None:
            self.net.send(self.host, fin)
        return bytes(conn.received)


# -- reading inboxes -------------------------------------------------------------------

def _udp_in(inbox: list[bytes], port: int, token: bytes) -> Optional[str]:
    """Source ("ip:port") of the first datagram to ``port`` carrying ``token``."""
    for raw in inbox:
        pkt = parse_packet(raw)
        if pkt.ip.proto == PROTO_UDP and pkt.l4 is not None and pkt.l4.dport == port and token in pkt.payload:
            return f"{to_str(pkt.ip.src)}:{pkt.l4.sport}"
    return None


def _echo_in(inbox: list[bytes], type_: int, ident: Optional[int], token: bytes) -> Optional[str]:
    """Source address of the first echo request (8) / reply (0) carrying ``token``."""
    for raw in inbox:
        pkt = parse_packet(raw)
        icmp = pkt.l4
        if pkt.ip.proto == PROTO_ICMP and icmp is not None and icmp.type == type_ \
                and (ident is None or icmp.ident == ident) and token in pkt.payload:
            return to_str(pkt.ip.src)
    return None


def _raw_in(inbox: list[bytes], proto: int, token: bytes) -> Optional[str]:
    """Source address of the first packet of IP protocol ``proto`` carrying ``token``."""
    for raw in inbox:
        pkt = parse_packet(raw)
        if pkt.ip.proto == proto and token in pkt.payload:
            return to_str(pkt.ip.src)
    return None


def _refused(inbox: list[bytes]) -> bool:
    """An ICMP destination unreachable came back (what makes a socket say ECONNREFUSED)."""
    for raw in inbox:
        pkt = parse_packet(raw)
        if pkt.ip.proto == PROTO_ICMP and pkt.l4 is not None and pkt.l4.type == 3:
            return True
    return False


def _why(out: Outcome, sender_inbox: list[bytes], probe: Probe) -> str:
    """Why a packet did not make it: the drop reason, "refused", or where it went instead."""
    if isinstance(out, Dropped):
        return out.reason
    if _refused(sender_inbox):
        return "refused"
    if isinstance(out, Delivered) and probe.receiver is not None and out.host != probe.receiver:
        return f"reached {out.host}, not {probe.receiver}"
    return ""


def _last_drop(events: tuple[dict[str, Any], ...]) -> str:
    """The reason of the last drop among a probe's events (e.g. an answer filtered on its way back)."""
    reasons = [e["reason"] for e in events if e.get("reason")]
    if reasons:
        return reasons[-1]
    kinds = [e["kind"] for e in events if e.get("kind") == "filtered"]
    return kinds[-1] if kinds else ""


def _replace(result: ProbeResult, **changes: Any) -> ProbeResult:
    from dataclasses import replace

    return replace(result, **changes)
