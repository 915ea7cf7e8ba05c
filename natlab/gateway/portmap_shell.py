"""The port mapping server beside a gateway's NAT: the service, the engine and the gateway, joined.

Theory of operation
-------------------
:class:`PortmapShell` owns one :class:`~natlab.portmap.service.PortMappingService`
under ``gateway.policy.port_mapping`` and is the one place its outcomes take
effect: ``MapPort``/``UnmapPort`` intents go to the engine
(``Engine.map_port``/``unmap_port``, :mod:`natlab.engine.port_mappings`),
whose events land in the gateway's ring like every other; the service's own
refusals and reboots are recorded as ``portmap-refused``/``portmap-rebooted``;
replies come back as :class:`Send` values for the datapath's sockets (or the
in-memory network) to send. It does no I/O and reads the gateway's clock.

What the datapath calls: :meth:`on_udp` (a datagram to 5351 or 1900 of the
inside address), :meth:`on_http` (one framed request to port 5000),
:meth:`due` / :meth:`next_deadline` (delayed SSDP answers and the
announcements repeated after a start, a reboot or an address change,
``ANNOUNCE_DELAYS``). The gateway calls :meth:`changed` after a flush (the
server reboots: table flushed, epoch reset, announcements), a pool change (a
new external address: the table is flushed and clients are told) and a new
policy (the service takes it; mappings of a protocol turned off go).

Double NAT (``pcp_interworking``, :mod:`natlab.gateway.portmap_iwf` and
:mod:`natlab.gateway.portmap_relay`): with an upstream NAT and a datapath that
connected :meth:`connect_upstream`, NAT-PMP and UPnP answers carry the outer
mapping. The gateway's own PCP client endpoint (first external address, port
5350) is an explicit mapping in the engine admitting only the upstream server,
so its answers reach the gateway itself through the NAT as on a real router.

Hostile input: the service answers or drops and counts malformed messages;
here, M-SEARCH floods are limited per sender (``SSDP_BUDGET`` per
``SSDP_WINDOW`` seconds) and the queue of delayed answers is bounded, both
counted. The counters are the gateway's ``portmap`` section.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any, Callable, Optional, Union

from natlab.engine.port_mapping_policy import RemotePeer
from natlab.engine.types import Endpoint, Proto, to_int
from natlab.gateway import portmap_relay
from natlab.gateway.portmap_iwf import CLIENT_PORT as UPSTREAM_PORT, Interworking
from natlab.portmap import natpmp, ssdp
from natlab.portmap.http import Request
from natlab.portmap.service import ANNOUNCE_DELAYS, LinkStats, PortMappingService
from natlab.portmap.types import (
    Datagram, HttpReply, MapPort, MappingKind, Outcome, PortMapEventKind, PortMappingPolicy, UnmapPort,
)

PORTMAP_PORT = natpmp.SERVER_PORT
SSDP_PORT = ssdp.PORT
SSDP_BUDGET = 20
SSDP_WINDOW = 10.0
MAX_PENDING = 512
_KIND_OF = {MappingKind.NATPMP: "natpmp", MappingKind.PCP: "pcp", MappingKind.UPNP: "upnp"}
_RECORDED = {PortMapEventKind.REFUSED: "portmap-refused", PortMapEventKind.REBOOTED: "portmap-rebooted"}


@dataclass(frozen=True)
class Send:
    """A UDP datagram the server sends from ``from_port`` of its inside address."""

    data: bytes
    to: Endpoint
    from_port: int


def serves_port_mapping(gateway: Any) -> bool:
    """Whether ``gateway`` can have a port mapping server (a NAT engine with a policy value)."""
    return hasattr(gateway.engine, "map_port") and hasattr(gateway.policy, "port_mapping")


class PortmapShell:
    """The port mapping server of ``gateway`` (attached to it: told of flushes, pools, policies)."""

    def __init__(self, gateway: Any, *, link_stats: Optional[Callable[[], LinkStats]] = None) -> None:
        self.gateway = gateway
        self.engine = gateway.engine
        spec = gateway.spec
        self.inside = Endpoint.of(spec.inside, PORTMAP_PORT)
        rng = random.Random(int(spec.seed) ^ 0x504D4150)
        self.service = PortMappingService(
            self.policy, self._external(), rng, self.engine.port_free, now=gateway.now(),
            inside_address=self.inside.addr, link_stats=link_stats or self._engine_link_stats,
            implicit_port=self._implicit_port, peer=self._peer if hasattr(self.engine, "peer") else None)
        self.stats: dict[str, int] = {}
        self.listeners: list[Callable[[PortMappingPolicy], None]] = []
        """Told of every new port mapping policy (the datapath opens or closes sockets)."""
        self._pending: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._searches: dict[int, list[float]] = {}
        self.iwf: Optional[Interworking] = None
        self.ready: list[Send] = []
        """Answers completed out of turn (after the upstream server answered), for :meth:`due`."""
        self._upstream_send: Optional[Callable[[bytes], None]] = None
        self._iwf_at: tuple = ()
        upstream = getattr(spec, "upstream_address", "")
        self.upstream = to_int(upstream) if upstream else None
        gateway.companions.append(self)
        gateway.stat_sources.append(lambda: {"portmap": self.counters()})
        self._announce_from(gateway.now())

    @property
    def policy(self) -> PortMappingPolicy:
        return self.gateway.policy.port_mapping

    # -- what the datapath calls ---------------------------------------------------
    def on_udp(self, port: int, data: bytes, sender: Endpoint, delays: bool = True) -> list[Send]:
        """A datagram to ``port`` (5351 or 1900) of the inside address from ``sender``. SSDP
        answers leave through :meth:`due` after their MX delay (netns: the daemon's select
        timeout; memory: the manual clock); without ``delays`` they come at once (tests)."""
        now = self.gateway.now()
        if port == PORTMAP_PORT:
            out = self.service.handle_datagram(data, sender, now)
            if self.iwf is not None and data[:1] == bytes([natpmp.VERSION]) and self.policy.natpmp:
                return portmap_relay.natpmp_answers(self, data, sender, out, now)
        elif port == SSDP_PORT:
            if not self._search_allowed(sender.addr, now):
                self.count("ssdp.dropped.rate-limited")
                return []
            out = self.service.handle_ssdp(data, sender, now)
        else:
            self.count("udp.dropped.wrong-port")
            return []
        return self.carry_out(out, sender, port, now, delays=delays)

    def on_http(self, request: Request, sender: Endpoint) -> Union[HttpReply, portmap_relay.Deferred]:
        """One framed request to TCP 5000; SUBSCRIBE/UNSUBSCRIBE (GENA eventing) get 501. Passed
        upstream (``pcp_interworking``), an AddPortMapping's answer is a ``Deferred``."""
        now = self.gateway.now()
        if request.method in ("SUBSCRIBE", "UNSUBSCRIBE", "NOTIFY"):
            self.count("upnp.http.eventing-not-implemented")
            return HttpReply(501)
        if request.method not in ("GET", "POST"):
            self.count("upnp.http.bad-method")
            return HttpReply(405)
        out = self.service.handle_http(request.method, request.path, dict(request.headers), request.body,
                                       sender, now)
        self.carry_out(out, sender, 0, now)
        if self.iwf is not None and request.method == "POST" and self.policy.upnp:
            return portmap_relay.upnp_answer(self, request, out, now)
        reply = next((r for r in out.replies if isinstance(r, HttpReply)), None)
        if reply is None:  # dropped by the service (e.g. UPnP turned off): counted there
            return HttpReply(404)
        return reply

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def next_deadline(self) -> Optional[float]:
        """When :meth:`due` next has something to send (gateway clock), or None."""
        times = [self._pending[0][0]] if self._pending else []
        if self.ready:
            times.append(self.gateway.now())
        if self.iwf is not None and self.iwf.next_deadline() is not None:
            times.append(self.iwf.next_deadline())
        return min(times, default=None)

    # -- double NAT ------------------------------------------------------------------
    def connect_upstream(self, send: Callable[[bytes], None]) -> None:
        """The datapath can send PCP to the upstream server from :attr:`upstream_endpoint`."""
        self._upstream_send = send
        self._interworking(self.gateway.now())

    @property
    def upstream_endpoint(self) -> Optional[Endpoint]:
        """Where the gateway's own PCP client listens (first external address, 5350), if it runs."""
        address = self._external()
        return Endpoint(address, UPSTREAM_PORT) if self.iwf is not None and address is not None else None

    def on_upstream(self, data: bytes, source: Endpoint) -> list[Send]:
        """An answer from the upstream PCP server; the client answers it completed."""
        if self.iwf is None:
            self.count("iwf.dropped.not-running")
            return []
        self.iwf.on_upstream(data, source)
        return self.take_ready()

    def take_ready(self) -> list[Send]:
        ready, self.ready = self.ready, []
        return ready

    def send_to(self, data: bytes, to: Endpoint) -> Send:
        return Send(data, to, PORTMAP_PORT)

    def _interworking(self, now: float) -> None:
        """Start, restart or stop the upstream PCP client as the policy, pool and datapath allow."""
        wanted = self.policy.pcp_interworking and self.upstream is not None and self._upstream_send is not None
        address = self._external()
        if self.iwf is not None and wanted and self._iwf_at == (address, self.service.boot_id):
            return  # running, and nothing it depends on changed
        self.gateway.invalidate_fast()
        if self.iwf is not None:
            self.iwf.forget()
            self.gateway.record_tick(self.engine.unmap_port(int(Proto.UDP), UPSTREAM_PORT, now))
            self.iwf = None
        if not wanted or address is None:
            return
        self._iwf_at = (address, self.service.boot_id)
        assert self.upstream is not None and self._upstream_send is not None
        own = RemotePeer(IPv4Network((self.upstream, 32)), natpmp.SERVER_PORT)
        tick = self.engine.map_port("pcp", int(Proto.UDP), Endpoint(address, UPSTREAM_PORT), UPSTREAM_PORT, None,
                                    (own,), now, "the gateway's own PCP client (pcp_interworking)")
        self.gateway.record_tick(tick)
        self.iwf = Interworking(self.upstream, self._external, self._upstream_send,
                                random.Random(self.service.boot_id ^ int(self.gateway.spec.seed)),
                                lambda proto, port: self.service.find_external(proto, port) is not None)
        self.iwf.learn_address(now)

    def due(self) -> list[Send]:
        """Datagrams whose time has come: delayed SSDP answers, repeated announcements."""
        now = self.gateway.now()
        if self.iwf is not None:
            self.iwf.due(now)
        out: list[Send] = self.take_ready()
        while self._pending and self._pending[0][0] <= now:
            _, _, item = heapq.heappop(self._pending)
            if isinstance(item, Send):
                out.append(item)
            else:  # an announcement: made when sent, so it carries the epoch of that moment
                out += [Send(d.data, d.to or self._group(), PORTMAP_PORT) for d in self.service.announcements(now)]
        return out

    def counters(self) -> dict[str, Any]:
        return {"mappings": len(self.service.mappings()), "epoch": self.service.epoch(self.gateway.now()),
                "boot_id": self.service.boot_id, **dict(sorted(self.service.counters.items())),
                **dict(sorted(self.stats.items())), "engine": self.engine.port_mapping_counters(),
                **({"interworking": self.iwf.report()} if self.iwf is not None else {})}

    # -- what the gateway calls ----------------------------------------------------
    def changed(self, what: str) -> None:
        now = self.gateway.now()
        if what == "flush":
            self.carry_out(self.service.reboot(now), None, PORTMAP_PORT, now, announced=True)
            self._interworking(now)
        elif what == "pool":
            address = self._external()
            if address != self.service.external_address:
                out = self.service.release_all(self.service.mappings(), now, PortMapEventKind.FLUSHED)
                out += self.service.set_external_address(address, now)
                self.carry_out(out, None, PORTMAP_PORT, now, announced=True)
                self._interworking(now)
        elif what == "policy":
            self._new_policy(now)

    # -- helpers -------------------------------------------------------------------
    def _new_policy(self, now: float) -> None:
        new = self.policy
        if new == self.service.policy:
            return
        self.service.policy = new
        off = {MappingKind.NATPMP: not new.natpmp, MappingKind.PCP: not new.pcp, MappingKind.UPNP: not new.upnp}
        gone = [m for m in self.service.mappings() if off[m.kind]]
        self.carry_out(self.service.release_all(gone, now), None, PORTMAP_PORT, now)
        self._interworking(now)
        for listener in self.listeners:
            listener(new)

    def carry_out(self, out: Outcome, sender: Optional[Endpoint], port: int, now: float,
                   announced: bool = False, delays: bool = True) -> list[Send]:
        if out.intents:  # the engine's state changes: no fast-path entry may outlive it
            self.gateway.invalidate_fast()
        for intent in out.intents:
            m = intent.mapping
            if isinstance(intent, MapPort):
                tick = self.engine.map_port(_KIND_OF[m.kind], int(m.protocol), m.internal, m.external_port,
                                            m.expires, m.filters, now, m.description)
                if any(ev.kind.value == "port-mapping-refused" for ev in tick.events):
                    self.service.release(m, now)  # the engine had it otherwise: the table follows
                    self.count("conflicts.engine-refused")
            elif isinstance(intent, UnmapPort):
                tick = self.engine.unmap_port(int(m.protocol), m.external_port, now)
            self.gateway.record_tick(tick)
        for event in out.events if self.policy.serves else ():  # a NAT serving none says nothing
            kind = _RECORDED.get(event.kind)
            if kind is not None:
                entry = {"kind": kind, "detail": event.detail}
                if event.protocol is not None:
                    entry["protocol"] = event.protocol.value
                self.gateway.record(entry)
        sends: list[Send] = []
        for reply in out.replies:
            if not isinstance(reply, Datagram):
                continue
            to = reply.to or sender
            if to is None:
                continue
            send = Send(reply.data, to, PORTMAP_PORT if reply.to is not None else port)
            if (reply.delay > 0 and delays) or sender is None:  # unsolicited ones leave through due()
                self._later(now + reply.delay * delays, send)
            else:
                sends.append(send)
        if announced:
            self._announce_from(now, first=False)
        return sends

    def _announce_from(self, now: float, first: bool = True) -> None:
        """Schedule the announcements (the first one too, unless the service just made it); a
        schedule still running from an earlier start is dropped."""
        self._pending = [entry for entry in self._pending if entry[2] != "announce"]
        heapq.heapify(self._pending)
        if not (self.policy.natpmp or self.policy.pcp):
            return
        for delay in ANNOUNCE_DELAYS[0 if first else 1:]:
            self._later(now + delay, "announce")

    def _later(self, at: float, item: Any) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.count("dropped.queue-full")
            return
        heapq.heappush(self._pending, (at, next(self._seq), item))

    def _search_allowed(self, source: int, now: float) -> bool:
        recent = [t for t in self._searches.get(source, ()) if t > now - SSDP_WINDOW]
        if len(recent) >= SSDP_BUDGET:
            self._searches[source] = recent
            return False
        recent.append(now)
        self._searches[source] = recent
        if len(self._searches) > 4096:  # forget senders gone quiet
            self._searches = {k: v for k, v in self._searches.items() if v and v[-1] > now - SSDP_WINDOW}
        return True

    def _external(self) -> Optional[int]:
        pool = self.gateway.pool
        return to_int(pool[0]) if pool else None

    def _group(self) -> Endpoint:
        return Endpoint.of(natpmp.ANNOUNCE_GROUP, natpmp.CLIENT_PORT)

    def _implicit_port(self, proto: Proto, internal: Endpoint) -> Optional[int]:
        """The external port of ``internal``'s endpoint-independent dynamic mapping on the first address."""
        want, first = str(internal), self.gateway.pool[0] if self.gateway.pool else ""
        label = Proto(proto).label
        for view in self.engine.mappings(self.gateway.now()):
            if view.kind == "dynamic" and view.protocol == label and view.internal == want \
                    and view.remote == "*" and view.external_address == first:
                return view.external_port
        return None

    def _peer(self, proto: Proto, internal: Endpoint, remote: Endpoint, suggested: int, until: Optional[float],
              nonce: bytes, now: float):
        """A PCP PEER, carried out in the engine at once (its answer is the reply's content)."""
        self.gateway.invalidate_fast()
        answer, tick = self.engine.peer(int(proto), internal, remote, suggested, until, nonce, now)
        self.gateway.record_tick(tick)
        return answer

    def _engine_link_stats(self) -> LinkStats:
        c = self.engine.counters
        return LinkStats(packets_sent=c.translated_out, packets_received=c.translated_in)


def attach(gateway: Any, **kw: Any) -> Optional[PortmapShell]:
    """The port mapping shell of ``gateway``, or None if its engine cannot map ports (pass-through)."""
    if not serves_port_mapping(gateway):
        return None
    return PortmapShell(gateway, **kw)
