"""Explicit port mappings (NAT-PMP, PCP, UPnP IGD): mappings of kind natpmp, pcp or upnp.

Theory of operation
-------------------
The gateway's port mapping server (:mod:`natlab.portmap`) decides what to map;
this module carries it out in the NAT's state. An explicit mapping is a
:class:`HeldMapping`, a :class:`~natlab.engine.table.Mapping` of kind
``natpmp``, ``pcp`` or ``upnp`` on the first pool address, with:

- an explicit external port and a lifetime (``until``; None is a permanent
  UPnP lease). A timer on the state's heap ends it; its sessions age as usual
  but never end it, and a refresh moves ``until``;
- filtering by its remote peers: none given admits every remote (a MAP is
  endpoint-independent, RFC 6887 section 11.1), else only those a FILTER
  names (section 13.3). The NAT's own ``filtering`` does not apply;
- outbound use: a new session from its internal endpoint goes out through it,
  as through a port forward, so peers see the endpoint that was mapped.

Conflicts. :func:`is_free` answers the server's ``is_free(proto, port)``: no
mapping of any kind (dynamic, forward, explicit) holds the external endpoint,
and under CGN port blocks (RFC 6888) no subscriber holds the port's block, so
the server picks another port or refuses (UPnP 729, PCP CANNOT_PROVIDE_EXTERNAL).
:func:`map_port` over the internal endpoint's own dynamic mapping makes that
implicit mapping explicit (its sessions move over, the external endpoint stays:
RFC 6887 section 11.3); over anything else it refuses. A port forward installed
later over an explicit mapping ends it (configuration wins); so does losing
the external address (``set_pool``) and a reboot (``flush``). Every such case
is counted in :attr:`PortMappingTable.counters`.

The functions take the state through :class:`PortMapContext` (what they use of
it), never the engine.
"""

from __future__ import annotations

from typing import Iterable, Optional, Protocol, Sequence

from natlab.engine.port_mapping_policy import RemotePeer
from natlab.engine.table import Mapping
from natlab.engine.types import Endpoint, FlowKey, Proto
from natlab.engine.verdicts import Event, EventKind

KINDS = ("natpmp", "pcp", "upnp")
"""Mapping kinds a port mapping protocol makes (``MappingView.kind``)."""


class HeldMapping(Mapping):
    """An explicit mapping: held until ``until`` whatever its sessions do."""

    __slots__ = ("filters", "until", "description", "token")

    def __init__(self, kind: str, proto: int, internal: Endpoint, external: Endpoint, until: Optional[float],
                 filters: tuple[RemotePeer, ...], now: float, description: str = "") -> None:
        super().__init__(proto, internal, external, FlowKey(proto, internal.addr, internal.port), now, kind)
        self.until = until
        self.description = description
        self.token = 0
        """Bumped by every refresh (stale lifetime timers see it) and -1 once removed."""
        self.filters = filters
        self.set_filters(filters)

    @property
    def expires(self) -> Optional[float]:  # type: ignore[override]
        return self.until

    def set_filters(self, filters: tuple[RemotePeer, ...]) -> None:
        self.filters = tuple(filters)
        self.remote = ",".join(str(f) for f in self.filters) or "*"

    def admits(self, y_addr: int, y_port: int) -> bool:
        """A remote may write to it: no filters (RFC 6887 section 11.1), or a FILTER names it."""
        return not self.filters or any(f.admits(y_addr, y_port) for f in self.filters)


class PortMappingTable:
    """The state's side table of explicit mappings (the mappings are in ``by_external`` too)."""

    def __init__(self) -> None:
        self.held: dict[tuple[int, int], HeldMapping] = {}
        """By (proto, external port)."""
        self.outbound: dict[tuple[int, int, int], HeldMapping] = {}
        """By (proto, X, x): the mapping new outbound sessions of X:x use (the lowest external port)."""
        self.peers: dict[tuple, object] = {}
        """PCP PEER holds by 5-tuple (:mod:`natlab.engine.peer_mappings`)."""
        self.counters: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.held)

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def clear(self) -> None:
        self.held.clear()
        self.outbound.clear()
        self.peers.clear()


class PortMapContext(Protocol):
    """What this module uses of :class:`~natlab.engine.state.NatState`."""

    by_external: dict
    port_maps: PortMappingTable

    @property
    def pool(self) -> tuple[int, ...]: ...
    @property
    def policy(self): ...
    @property
    def allocator(self): ...
    def remove_session(self, sess) -> None: ...
    def remove_mapping(self, m: Mapping, now: float, events, kind, detail: str = "") -> None: ...
    def schedule(self, deadline: float, item: object) -> None: ...


class _Lifetime:
    """The heap entry ending an explicit mapping when its lifetime runs out."""

    __slots__ = ("ctx", "mapping", "token")

    def __init__(self, ctx: PortMapContext, mapping: HeldMapping) -> None:
        self.ctx, self.mapping, self.token = ctx, mapping, mapping.token

    def due(self, now: float, events: list, emits: list) -> Optional[float]:
        m = self.mapping
        if m.token != self.token or m.until is None:
            return None  # refreshed since (a newer entry is armed) or removed
        if m.until > now:
            return m.until
        _remove(self.ctx, m, now, events, EventKind.PORT_MAPPING_EXPIRED, "lifetime ran out")
        self.ctx.port_maps.count("expired")
        return None


# -- queries -----------------------------------------------------------------------

def is_free(ctx: PortMapContext, proto: int, port: int) -> bool:
    """Whether the external ``port`` may be given to an explicit mapping."""
    if not ctx.pool or not 0 < port < 65536:
        return False
    address = ctx.pool[0]
    if (proto, address, port) in ctx.by_external:
        return False
    block = ctx.policy.port_block
    if block:
        low = ctx.policy.port_range.low
        if low <= port:
            first = low + (port - low) // block * block
            if ctx.allocator.block_state(address, first) != "free":
                return False
    return True


def implicit_port(ctx: PortMapContext, proto: int, internal: Endpoint) -> Optional[int]:
    """The external port of ``internal``'s endpoint-independent dynamic mapping, if it has one."""
    if not ctx.pool:
        return None
    address = ctx.pool[0]
    for m in ctx.by_external.values():
        if m.kind == "dynamic" and m.proto == proto and m.internal == internal \
                and m.external.addr == address and m.remote == "*":
            return m.external.port
    return None


# -- transitions ---------------------------------------------------------------------

def map_port(ctx: PortMapContext, kind: str, proto: int, internal: Endpoint, external_port: int,
             until: Optional[float], filters: Sequence[RemotePeer], now: float, description: str = "") -> list[Event]:
    """Install or refresh the explicit mapping of ``external_port`` (the server already chose it)."""
    if kind not in KINDS:
        raise ValueError(f"not a port mapping kind: {kind!r} (one of {', '.join(KINDS)})")
    table = ctx.port_maps
    events: list[Event] = []
    held = table.held.get((proto, external_port))
    if held is not None and held.kind == kind and held.internal == internal:
        held.until = until
        held.description = description or held.description
        held.set_filters(tuple(filters))
        held.token += 1
        _arm(ctx, held)
        table.count("refreshed")
        return [_event(EventKind.PORT_MAPPING_REFRESHED, held, now, _lifetime_text(until, now))]
    if held is not None:  # the server's table says otherwise: the server wins
        _remove(ctx, held, now, events, EventKind.PORT_MAPPING_DELETED, f"replaced by a {kind} mapping")
        table.count("conflicts.replaced-explicit")
    if not ctx.pool:
        table.count("conflicts.no-external-address")
        return events + [_refusal(kind, proto, internal, external_port, now, "no external address")]
    external = Endpoint(ctx.pool[0], external_port)
    other = ctx.by_external.get((proto, external.addr, external_port))
    adopted: Optional[Mapping] = None
    if other is not None:
        if other.kind == "dynamic" and other.internal == internal:
            adopted = other
        else:
            table.count(f"conflicts.refused-{other.kind}")
            return events + [_refusal(kind, proto, internal, external_port, now,
                                      f"external endpoint held by a {other.kind} mapping")]
    m = HeldMapping(kind, proto, internal, external, until, tuple(filters), now, description)
    detail = _lifetime_text(until, now)
    if adopted is not None:
        _adopt(ctx, adopted, m, now)
        table.count("conflicts.adopted-dynamic")
        detail += "; the dynamic mapping became explicit"
    ctx.by_external[(proto, external.addr, external_port)] = m
    table.held[(proto, external_port)] = m
    key = (proto, internal.addr, internal.port)
    current = table.outbound.get(key)
    if current is None or external_port < current.external.port:
        table.outbound[key] = m
    _arm(ctx, m)
    table.count("created")
    return events + [_event(EventKind.PORT_MAPPING_CREATED, m, now, detail)]


def unmap_port(ctx: PortMapContext, proto: int, external_port: int, now: float) -> list[Event]:
    """Remove the explicit mapping of ``external_port`` (a delete); nothing if there is none."""
    held = ctx.port_maps.held.get((proto, external_port))
    if held is None:
        return []
    events: list[Event] = []
    _remove(ctx, held, now, events, EventKind.PORT_MAPPING_DELETED, "deleted")
    ctx.port_maps.count("deleted")
    return events


def flush(ctx: PortMapContext, now: float, events: list) -> None:
    """A reboot: every explicit mapping is gone (one event for them all)."""
    ctx.port_maps.peers.clear()  # PCP PEER holds: their sessions went with the dynamic mappings
    n = _remove_all(ctx, list(ctx.port_maps.held.values()), now, None, "flushed", "flushed")
    if n:
        events.append(Event(EventKind.MAPPINGS_FLUSHED, now, detail=f"{n} port mappings: flushed"))


def withdraw(ctx: PortMapContext, now: float, events: list) -> None:
    """After a pool change: explicit mappings not on the first pool address end."""
    first = ctx.pool[0] if ctx.pool else None
    gone = [m for m in ctx.port_maps.held.values() if m.external.addr != first]
    _remove_all(ctx, gone, now, events, "external address withdrawn", "withdrawn")


def reconcile(ctx: PortMapContext, now: float, events: list) -> None:
    """After a new policy: explicit mappings a port forward now holds the endpoint of end."""
    gone = [m for m in ctx.port_maps.held.values()
            if ctx.by_external.get((m.proto, m.external.addr, m.external.port)) is not m]
    _remove_all(ctx, gone, now, events, "a port forward took its external port", "conflicts.replaced-by-forward")


# -- helpers ---------------------------------------------------------------------------

def _remove_all(ctx: PortMapContext, gone: Iterable[HeldMapping], now: float, events, why: str,
                counter: str) -> int:
    n = 0
    for m in gone:
        _remove(ctx, m, now, events, EventKind.PORT_MAPPING_DELETED, why)
        ctx.port_maps.count(counter)
        n += 1
    return n


def _arm(ctx: PortMapContext, m: HeldMapping) -> None:
    if m.until is not None:
        ctx.schedule(m.until, _Lifetime(ctx, m))


def _adopt(ctx: PortMapContext, dynamic: Mapping, held: HeldMapping, now: float) -> None:
    """Move the dynamic mapping's sessions onto ``held`` and end it quietly (same endpoints)."""
    for remote, sess in list(dynamic.sessions.items()):
        sess.mapping = held
        held.sessions[remote] = sess
        held.addr_refs[remote[0]] = held.addr_refs.get(remote[0], 0) + 1
    held.packets_out, held.packets_in = dynamic.packets_out, dynamic.packets_in
    dynamic.sessions.clear()
    dynamic.addr_refs.clear()
    ctx.remove_mapping(dynamic, now, None, None)


def _remove(ctx: PortMapContext, m: HeldMapping, now: float, events, kind: EventKind, detail: str) -> None:
    table = ctx.port_maps
    m.token = -1
    for sess in list(m.sessions.values()):
        ctx.remove_session(sess)
    if ctx.by_external.get((m.proto, m.external.addr, m.external.port)) is m:
        del ctx.by_external[(m.proto, m.external.addr, m.external.port)]
    if table.held.get((m.proto, m.external.port)) is m:
        del table.held[(m.proto, m.external.port)]
    key = (m.proto, m.internal.addr, m.internal.port)
    if table.outbound.get(key) is m:
        del table.outbound[key]
        rest = [h for h in table.held.values() if (h.proto, h.internal.addr, h.internal.port) == key]
        if rest:
            table.outbound[key] = min(rest, key=lambda h: h.external.port)
    if events is not None:
        events.append(_event(kind, m, now, detail))


def _lifetime_text(until: Optional[float], now: float) -> str:
    return "permanent" if until is None else f"lifetime {until - now:g} s"


def _event(kind: EventKind, m: HeldMapping, now: float, detail: str) -> Event:
    text = f"{m.kind}: {detail}" + (f" ({m.description})" if m.description else "")
    return Event(kind, now, Proto(m.proto).label, str(m.internal), str(m.external), m.remote, None, text)


def _refusal(kind: str, proto: int, internal: Endpoint, port: int, now: float, why: str) -> Event:
    return Event(EventKind.PORT_MAPPING_REFUSED, now, Proto(proto).label, str(internal),
                 f"*:{port}", reason="port-mapping-conflict", detail=f"{kind}: {why}")


