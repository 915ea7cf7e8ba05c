"""The port mapping service: one protocol-neutral table behind NAT-PMP, PCP and UPnP.

Served on every gateway whose policy turns a protocol on: the gateway shell
(:mod:`natlab.gateway.portmap_shell`) feeds it and carries its intents out in
the engine (:mod:`natlab.engine.port_mappings`). Nothing here does I/O.

Theory of operation. ``PortMappingService`` owns the table (one entry per
external protocol and port), the epoch and the counters. Each protocol's
module (``serve_natpmp``, ``serve_pcp``, ``serve_upnp``) turns a message into a
``MappingRequest`` and calls ``grant`` or ``release``; the table answers with
``Granted``/``Refused`` and never knows which protocol asked beyond the
mapping's ``kind``. Entry points take the message, the sender and ``now`` and
return an ``Outcome``: replies for the shell to send, intents (``MapPort``,
``UnmapPort``) for the engine, events. Expired entries are removed at the start
of every call; ``next_deadline()`` tells the shell when to call ``expire``.

Two narrow callables come from the caller: ``is_free(proto, port)`` says
whether the engine can give an external port away (no dynamic mapping, forward
or static NAT on it), and ``link_stats()`` gives the counters UPnP's
WANCommonInterfaceConfig reports. ``implicit_port(proto, internal)`` (optional)
names the external port of the internal endpoint's own dynamic mapping: a
NAT-PMP or PCP request for that endpoint gets that port, the implicit mapping
becoming explicit (RFC 6887 section 11.3). ``peer`` (optional) is the engine's PCP
PEER: PEER mappings are the engine's dynamic mappings, never entries here. Randomness comes only from the injected
``random.Random``. Hostile input is answered with the protocol's error or
dropped and counted in ``counters``; it never raises.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Callable, Iterable, Mapping, Optional

from natlab.engine.peer_mappings import PeerAnswer
from natlab.engine.types import AddressLike, Endpoint, Proto, to_int
from natlab.portmap import natpmp, pcp
from natlab.portmap.types import (
    Datagram, EpochOnReboot, Granted, MapPort, MappingKind, MappingRequest, Outcome,
    PortChoice, PortMapEvent, PortMapEventKind, PortMapping, PortMappingPolicy, Refusal,
    Refused, UnmapPort,
)

IsFree = Callable[[Proto, int], bool]
ImplicitPort = Callable[[Proto, Endpoint], Optional[int]]
Peer = Callable[[Proto, Endpoint, Endpoint, int, Optional[float], bytes, float], "PeerAnswer"]
"""peer(protocol, internal, remote, suggested_port, until or None, nonce, now): the engine's PCP PEER."""

ANNOUNCE_DELAYS = (0.0, 0.25, 0.75, 1.75, 3.75, 7.75, 15.75, 31.75, 63.75, 127.75)
"""When to repeat announcements after a reboot or address change: ten, the
interval doubling from 250 ms (RFC 6886 section 3.2.1)."""
_RANDOM_PROBES = 16


@dataclass(frozen=True)
class LinkStats:
    """What WANCommonInterfaceConfig reports: the WAN link's totals (the gateway shell's source)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    upstream_bps: int = 1_000_000_000
    downstream_bps: int = 1_000_000_000


def _always_free(_proto: Proto, _port: int) -> bool:
    return True


class PortMappingService:
    """One gateway's port mapping table and protocol front ends (pure, clock-free)."""

    def __init__(
        self,
        policy: PortMappingPolicy,
        external_address: Optional[AddressLike],
        rng: random.Random,
        is_free: IsFree = _always_free,
        *,
        now: float = 0.0,
        inside_address: Optional[AddressLike] = None,
        device_uuid: str = "",
        link_stats: Callable[[], LinkStats] = LinkStats,
        implicit_port: Optional[ImplicitPort] = None,
        peer: Optional[Peer] = None,
    ) -> None:
        self.policy = policy
        self.external_address = None if external_address is None else to_int(external_address)
        self.inside_address = None if inside_address is None else to_int(inside_address)
        self.device_uuid = device_uuid or _uuid_from(rng)
        self.link_stats = link_stats
        self.counters: dict[str, int] = {}
        self.boot_id = 1
        self._rng = rng
        self._is_free = is_free
        self._implicit_port = implicit_port
        self.peer = peer
        """The engine's PCP PEER (None: PEER is answered UNSUPP_OPCODE)."""
        self._table: dict[tuple[Proto, int], PortMapping] = {}
        self._epoch_start = now
        self._started = now

    # -- queries -----------------------------------------------------------

    def mappings(self) -> tuple[PortMapping, ...]:
        """The table, ordered by protocol then external port."""
        return tuple(self._table[key] for key in sorted(self._table))

    def find_external(self, protocol: Proto, port: int) -> Optional[PortMapping]:
        return self._table.get((protocol, port))

    def find_internal(self, protocol: Proto, internal: Endpoint) -> Optional[PortMapping]:
        """The first entry (by external port) mapping to ``internal``."""
        return next((m for m in self.mappings()
                     if m.protocol == protocol and m.internal == internal), None)

    def epoch(self, now: float) -> int:
        """Seconds since the start of the epoch (RFC 6886 3.6, RFC 6887 8.5), 32 bits."""
        return int(now - self._epoch_start) & 0xFFFFFFFF

    def uptime(self, now: float) -> int:
        return int(now - self._started)

    def next_deadline(self) -> Optional[float]:
        """When the next entry expires (None: nothing will)."""
        times = [m.expires for m in self._table.values() if m.expires is not None]
        return min(times, default=None)

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    # -- transitions -------------------------------------------------------

    def grant(self, request: MappingRequest, now: float) -> tuple[Granted | Refused, Outcome]:
        """Create or refresh the entry ``request`` asks for, or say why not."""
        existing, refusal = self._existing(request)
        if refusal is None and request.internal.addr != request.requester \
                and not self.policy.allow_third_party:
            refusal = Refusal.NOT_AUTHORIZED
        if refusal is None and existing is None:
            refusal = self._quota_refusal(request.internal.addr)
        port: int | Refusal = Refusal.NO_PORTS
        if refusal is None:
            port = existing.external_port if existing else self._pick_port(request)
            refusal = port if isinstance(port, Refusal) else None
        if refusal is not None:
            event = PortMapEvent(PortMapEventKind.REFUSED, now, request.kind, None, refusal.value)
            self.count(f"{request.kind.value}.refused.{refusal.value}")
            return Refused(refusal), Outcome(events=(event,))
        assert isinstance(port, int)
        mapping = self._entry(request, port, now, existing)
        self._table[(mapping.protocol, mapping.external_port)] = mapping
        kind = PortMapEventKind.REFRESHED if existing else PortMapEventKind.CREATED
        self.count(f"{request.kind.value}.{kind.value}")
        event = PortMapEvent(kind, now, request.kind, mapping)
        return Granted(mapping, existing is None), Outcome(intents=(MapPort(mapping),),
                                                            events=(event,))

    def release(self, mapping: PortMapping, now: float,
                kind: PortMapEventKind = PortMapEventKind.DELETED) -> Outcome:
        """Remove ``mapping`` (deleted, expired or flushed)."""
        if self._table.get((mapping.protocol, mapping.external_port)) is None:
            return Outcome()
        del self._table[(mapping.protocol, mapping.external_port)]
        self.count(f"{mapping.kind.value}.{kind.value}")
        return Outcome(intents=(UnmapPort(mapping),),
                       events=(PortMapEvent(kind, now, mapping.kind, mapping),))

    def release_all(self, mappings: Iterable[PortMapping], now: float,
                    kind: PortMapEventKind = PortMapEventKind.DELETED) -> Outcome:
        out = Outcome()
        for mapping in tuple(mappings):
            out += self.release(mapping, now, kind)
        return out

    def expire(self, now: float) -> Outcome:
        """Remove every entry whose lifetime has run out by ``now``."""
        due = [m for m in self._table.values() if m.expires is not None and m.expires <= now]
        return self.release_all(due, now, PortMapEventKind.EXPIRED)

    def reboot(self, now: float) -> Outcome:
        """A restart: the table is flushed, the boot id bumped, the epoch reset (per policy).

        The announcements returned are the first of ``ANNOUNCE_DELAYS``.
        """
        out = self.release_all(self.mappings(), now, PortMapEventKind.FLUSHED)
        self.boot_id += 1
        self._started = now
        if self.policy.epoch_on_reboot is EpochOnReboot.RESET:
            self._epoch_start = now
        event = PortMapEvent(PortMapEventKind.REBOOTED, now, detail=f"boot {self.boot_id}")
        return out + Outcome(self.announcements(now), events=(event,))

    def set_external_address(self, address: Optional[AddressLike], now: float) -> Outcome:
        """The WAN address changed (None: lost); clients are told by announcement."""
        self.external_address = None if address is None else to_int(address)
        return Outcome(self.announcements(now))

    def announcements(self, now: float) -> tuple[Datagram, ...]:
        """Unsolicited NAT-PMP address and PCP ANNOUNCE messages to 224.0.0.1:5350."""
        group = Endpoint.of(natpmp.ANNOUNCE_GROUP, natpmp.CLIENT_PORT)
        found: list[Datagram] = []
        if self.policy.natpmp and self.external_address is not None:
            answer = natpmp.ExternalAddressResponse(
                natpmp.NatpmpResult.SUCCESS, self.epoch(now), IPv4Address(self.external_address))
            found.append(Datagram(answer.emit(), group))
        if self.policy.pcp:
            announce = pcp.PcpResponse(pcp.PcpOpcode.ANNOUNCE, pcp.PcpResult.SUCCESS, 0,
                                       self.epoch(now))
            found.append(Datagram(announce.emit(), group))
        return tuple(found)

    # -- protocol entry points ---------------------------------------------

    def handle_datagram(self, data: bytes, sender: Endpoint, now: float) -> Outcome:
        """A UDP datagram to port 5351: NAT-PMP (version 0) or PCP (RFC 6887 section 9)."""
        from natlab.portmap import serve_natpmp, serve_pcp

        out = self.expire(now)
        data = bytes(data)
        if len(data) < 2:
            self.count("udp5351.dropped.too-short")
            return out
        if data[0] == natpmp.VERSION and self.policy.natpmp:
            return out + serve_natpmp.answer(self, data, sender, now)
        if self.policy.pcp:
            return out + serve_pcp.answer(self, data, sender, now)
        if self.policy.natpmp:
            return out + serve_natpmp.answer(self, data, sender, now)
        self.count("udp5351.dropped.disabled")
        return out

    def handle_ssdp(self, data: bytes, sender: Endpoint, now: float) -> Outcome:
        """An SSDP datagram to 239.255.255.250:1900 (or unicast to 1900)."""
        from natlab.portmap import serve_upnp

        if not self.policy.upnp:
            self.count("ssdp.dropped.disabled")
            return Outcome()
        return serve_upnp.answer_ssdp(self, data, self._rng)

    def handle_http(self, method: str, path: str, headers: Mapping[str, str], body: bytes,
                    sender: Endpoint, now: float) -> Outcome:
        """One HTTP request to the UPnP port: a description GET or a SOAP POST."""
        from natlab.portmap import serve_upnp

        out = self.expire(now)
        if not self.policy.upnp:
            self.count("upnp.dropped.disabled")
            return out
        return out + serve_upnp.answer_http(self, method, path, headers, body, sender, now)

    # -- helpers -----------------------------------------------------------

    def _existing(self, request: MappingRequest) -> tuple[Optional[PortMapping], Optional[Refusal]]:
        """The entry a request refreshes, or why it may not touch the one in its way."""
        if request.kind is MappingKind.UPNP:
            held = self._table.get((request.protocol, request.external_port))
            if held is None:
                return None, None
            if held.kind is MappingKind.UPNP and held.internal == request.internal:
                return held, None
            return None, (Refusal.PORT_TAKEN if request.choice is PortChoice.FIXED else None)
        held = self.find_internal(request.protocol, request.internal)
        if held is None:
            return None, None
        if held.kind is not request.kind:
            return None, Refusal.OWNED_BY_OTHER
        if request.kind is MappingKind.PCP and held.nonce != request.nonce:
            return None, Refusal.NONCE_MISMATCH
        return held, None

    def _quota_refusal(self, host: int) -> Optional[Refusal]:
        if len(self._table) >= self.policy.max_mappings:
            return Refusal.TABLE_FULL
        mine = sum(1 for m in self._table.values() if m.internal.addr == host)
        if mine >= self.policy.max_mappings_per_host:
            return Refusal.QUOTA
        return None

    def _why_not(self, protocol: Proto, port: int) -> Optional[Refusal]:
        if not 0 < port < 65536:
            return Refusal.NO_PORTS
        if port < 1024 and not self.policy.allow_low_ports:
            return Refusal.LOW_PORT
        if (protocol, port) in self._table:
            return Refusal.PORT_TAKEN
        if not self._is_free(protocol, port):
            return Refusal.PORT_IN_USE_ELSEWHERE
        return None

    def _pick_port(self, request: MappingRequest) -> int | Refusal:
        """The suggested port if usable, else a random free one (per the choice)."""
        wanted = request.external_port
        if request.kind is not MappingKind.UPNP and request.choice is PortChoice.SUGGESTED \
                and self._implicit_port is not None:
            implicit = self._implicit_port(request.protocol, request.internal)
            if implicit is not None and (request.protocol, implicit) not in self._table:
                return implicit
        honoured = request.choice is PortChoice.FIXED or self.policy.honour_requested_port
        if wanted:
            why = self._why_not(request.protocol, wanted) if honoured else Refusal.PORT_TAKEN
            if why is None:
                return wanted
            if request.choice is not PortChoice.SUGGESTED:
                return why
        low, high = self.policy.port_range
        for _ in range(_RANDOM_PROBES):
            port = self._rng.randint(low, high)
            if self._why_not(request.protocol, port) is None:
                return port
        start = self._rng.randint(low, high)
        span = high - low + 1
        for step in range(span):
            port = low + (start - low + step) % span
            if self._why_not(request.protocol, port) is None:
                return port
        return Refusal.NO_PORTS

    def _entry(self, request: MappingRequest, port: int, now: float,
               existing: Optional[PortMapping]) -> PortMapping:
        expires = None if request.lifetime is None else now + self._clamp(request.lifetime)
        if existing is not None:
            return replace(existing, expires=expires, filters=request.filters,
                           description=request.description or existing.description,
                           enabled=request.enabled)
        return PortMapping(request.kind, request.protocol, request.internal, port, expires,
                           now, request.requester, request.nonce, request.filters,
                           request.description, request.enabled)

    def clamp(self, lifetime: int) -> int:
        """``lifetime`` within the policy's [min_lifetime, max_lifetime] (RFC 6887 section 15)."""
        return self._clamp(lifetime)

    def _clamp(self, lifetime: int) -> int:
        return max(self.policy.min_lifetime, min(self.policy.max_lifetime, lifetime))


def _uuid_from(rng: random.Random) -> str:
    """A version-4-shaped UUID from the injected generator (stable per seed)."""
    value = rng.getrandbits(128)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:32]}"
