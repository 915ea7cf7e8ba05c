"""Double NAT: a home router's NAT-PMP and UPnP server passes requests on to the upstream PCP server.

Theory of operation
-------------------
With ``port_mapping.pcp_interworking`` on (off by default, as on most home
routers), the gateway is an IGD-PCP interworking function (RFC 6970) for
UPnP and does the same for NAT-PMP: once its own server has granted the inner
mapping (alice:x -> our external address:y), :class:`Interworking` asks the
upstream NAT's PCP server (the gateway whose inside our outside network is)
for the outer one with a MAP for our external address:y (RFC 6887 section
11), and the client's answer waits for it: it then carries the outer address
and port. AddPortMapping asks with PREFER_FAILURE (the port is the mapping's
identity, RFC 6970 section 5.3); NAT-PMP and AddAnyPortMapping take the port
the upstream server picks. A refusal or no answer within ``TIMEOUT`` (one
retransmission) fails the client's request and removes the inner mapping.
Outer mappings are refreshed at half their lifetime while the inner one lives,
deleted with it, and forgotten on a reboot or an address change (the upstream
server's own table is not touched then; its mappings expire there).

It is sans-I/O like the rest of the shell: :meth:`map` and :meth:`unmap` call
the injected ``send`` with a PCP datagram, the datapath hands the answers to
:meth:`on_upstream`, and :meth:`due` retransmits, times out and refreshes. An
answer may come back inside ``send`` (the in-memory network), so callers
expect their callback to run at once or later.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Callable, Optional

from natlab.engine.types import Endpoint, Proto, to_str
from natlab.portmap import pcp

TIMEOUT = 1.0
"""Seconds before the one retransmission; twice that and the request fails."""
CLIENT_PORT = pcp.CLIENT_PORT
"""The port the gateway's own PCP client sends from (on its external address)."""


@dataclass(frozen=True)
class Outer:
    """What the upstream server answered: the outer endpoint, or the failure."""

    ok: bool
    address: Optional[int] = None
    port: int = 0
    lifetime: int = 0
    result: str = ""


Done = Callable[[Outer], None]


@dataclass
class _Pending:
    payload: bytes
    done: Optional[Done]
    deadline: float
    key: Optional[tuple[Proto, int]] = None
    """The outer mapping it asks for (forgotten again if refused)."""
    retried: bool = False


@dataclass
class _Held:
    nonce: bytes
    lifetime: int
    refresh_at: float


class Interworking:
    """The gateway's PCP client towards ``upstream`` (the upstream server's address)."""

    def __init__(self, upstream: int, client_address: Callable[[], Optional[int]], send: Callable[[bytes], None],
                 rng: random.Random, still_mapped: Callable[[Proto, int], bool]) -> None:
        self.upstream = Endpoint(upstream, pcp.SERVER_PORT)
        self.client_address = client_address
        self.send = send
        self.rng = rng
        self.still_mapped = still_mapped
        self.outer_address: Optional[int] = None
        self.counters: dict[str, int] = {}
        self._pending: dict[bytes, _Pending] = {}
        self._held: dict[tuple[Proto, int], _Held] = {}

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    # -- requests --------------------------------------------------------------------
    def map(self, proto: Proto, port: int, lifetime: int, require_port: bool, now: float, done: Done) -> None:
        """Ask for the outer mapping of our external ``port``; ``done`` gets the answer."""
        held = self._held.get((proto, port))
        nonce = held.nonce if held else self.rng.randbytes(pcp.NONCE_SIZE)
        self._held[(proto, port)] = _Held(nonce, lifetime, now + lifetime / 2)
        options = (pcp.PreferFailure(),) if require_port else ()
        self._ask(pcp.MapData(nonce, int(proto), port, port), lifetime, options, now, done, (proto, port))

    def unmap(self, proto: Proto, port: int, now: float) -> None:
        """Delete the outer mapping of our external ``port`` (no one waits for the answer)."""
        held = self._held.pop((proto, port), None)
        if held is not None:
            self._ask(pcp.MapData(held.nonce, int(proto), port, 0), 0, (), now, None)

    def learn_address(self, now: float) -> None:
        """Learn the upstream external address (a MAP delete of nothing answers with it)."""
        self._ask(pcp.MapData(self.rng.randbytes(pcp.NONCE_SIZE), int(Proto.UDP), CLIENT_PORT, 0), 0, (), now, None)

    def forget(self) -> None:
        """A reboot or a new external address: no outer mapping is ours any more."""
        self._held.clear()
        for pending in self._pending.values():
            if pending.done is not None:
                pending.done(Outer(False, result="NETWORK_FAILURE"))
        self._pending.clear()

    # -- answers and time --------------------------------------------------------------
    def on_upstream(self, data: bytes, source: Endpoint) -> None:
        if source != self.upstream:
            self.count("iwf.dropped.not-upstream")
            return
        response = pcp.parse_response(data)
        if isinstance(response, pcp.PcpDrop) or not isinstance(response.data, pcp.MapData):
            self.count("iwf.dropped.not-a-map-answer")
            return
        pending = self._pending.pop(response.data.nonce, None)
        if pending is None:
            self.count("iwf.dropped.unexpected")
            return
        ok = response.result is pcp.PcpResult.SUCCESS
        if not ok:
            self._drop_held(pending.key, response.data.nonce)
        if ok and isinstance(response.data.external_address, IPv4Address) \
                and not response.data.external_address.is_unspecified:
            self.outer_address = int(response.data.external_address)
        self.count(f"iwf.result.{response.result.name}")
        if pending.done is not None:
            pending.done(Outer(ok, self.outer_address, response.data.external_port, response.lifetime,
                               response.result.name))

    def next_deadline(self) -> Optional[float]:
        times = [p.deadline for p in self._pending.values()] + [h.refresh_at for h in self._held.values()]
        return min(times, default=None)

    def due(self, now: float) -> None:
        for nonce, pending in list(self._pending.items()):
            if pending.deadline > now:
                continue
            if not pending.retried:
                pending.retried = True
                pending.deadline += TIMEOUT  # from the first send: a clock that jumps fails it too
                self.count("iwf.retransmitted")
                self.send(pending.payload)
                if pending.deadline > now or nonce not in self._pending:
                    continue
            del self._pending[nonce]
            self._drop_held(pending.key, nonce)
            self.count("iwf.timeouts")
            if pending.done is not None:
                pending.done(Outer(False, result="TIMEOUT"))
        for (proto, port), held in list(self._held.items()):
            if held.refresh_at > now:
                continue
            if not self.still_mapped(proto, port):
                self.unmap(proto, port, now)
                continue
            self.count("iwf.refreshed")
            self.map(proto, port, held.lifetime, False, now, lambda _outer: None)

    def report(self) -> dict[str, Any]:
        return {"upstream": to_str(self.upstream.addr),
                "outer_address": to_str(self.outer_address) if self.outer_address is not None else None,
                "outer_mappings": len(self._held), **dict(sorted(self.counters.items()))}

    def _drop_held(self, key: Optional[tuple[Proto, int]], nonce: bytes) -> None:
        held = self._held.get(key) if key is not None else None
        if held is not None and held.nonce == nonce:
            del self._held[key]  # type: ignore[arg-type]

    def _ask(self, data: pcp.MapData, lifetime: int, options: tuple, now: float, done: Optional[Done],
             key: Optional[tuple[Proto, int]] = None) -> None:
        client = self.client_address()
        if client is None:
            if done is not None:
                done(Outer(False, result="NETWORK_FAILURE"))
            return
        request = pcp.PcpRequest(pcp.PcpOpcode.MAP, lifetime, IPv4Address(client), data, options)
        payload = request.emit()
        self._pending[data.nonce] = _Pending(payload, done, now + TIMEOUT, key)
        self.count("iwf.requests")
        self.send(payload)
