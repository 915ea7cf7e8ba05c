"""PCP PEER (RFC 6887 section 12): a dynamic outbound mapping made or kept alive on request.

Theory of operation
-------------------
A PEER request names a 5-tuple (protocol, internal X:x, remote Y:y). The engine
answers it as it would the first outbound packet of that flow: :func:`peer`
opens the session through :meth:`NatState.open_session
<natlab.engine.state.NatState.open_session>` (so the NAT's own mapping and
filtering behaviour apply, section 12: "consistent with the existing behavior
of the NAT ... for implicit outbound mappings"), or finds the one traffic
already made. No packet is sent: a UDP session starts unreplied, a TCP one in
SYN-SENT, exactly as after an outbound SYN.

The request's lifetime becomes a *hold* (:class:`PeerHold`, one per 5-tuple,
in ``PortMappingTable.peers``): the session does not end before the hold's
``until`` whatever its own idle timer says (the state's expiry asks
:func:`holds`), and its own timer still applies after (the answered lifetime is
never shorter than that timer). A hold belongs to the nonce that made it: a
refresh or a delete with another nonce is refused (section 11.3's rules, which
section 12.3 applies to PEER). A PEER on a mapping that traffic made (no hold)
takes it over with its nonce. Lifetime 0 ends the hold only: the mapping lives
on by its own traffic timers (section 15), as an implicit one would.

A suggested external port is taken only when a new mapping is made, it is free
(:func:`natlab.engine.port_mappings.is_free`), and the NAT has no CGN port
blocks; the server decides whether its policy honours suggestions at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from natlab.engine.port_mappings import is_free
from natlab.engine.types import Endpoint, Proto
from natlab.engine.verdicts import Drop, Event, EventKind


@dataclass(frozen=True)
class PeerAnswer:
    """What :func:`peer` did: the mapping's external endpoint and when the mapping would end
    (``expires``: the hold or the session's own timer, the later), or why not (``refusal``)."""

    external: Optional[Endpoint]
    expires: float
    refusal: str = ""
    created: bool = False

    @property
    def ok(self) -> bool:
        return not self.refusal


class PeerHold:
    """One PEER's hold on a session: it lives at least until ``until``.

    ``own`` is the session's own deadline when the hold raised it to ``raised``
    (to give it back when the hold ends before traffic moved it).
    """

    __slots__ = ("session", "until", "nonce", "own", "raised")

    def __init__(self, session, until: float, nonce: bytes) -> None:
        self.session, self.until, self.nonce = session, until, nonce
        self.own = session.expires
        self.raised = session.expires


def holds(ctx, sess, now: float) -> bool:
    """The state's expiry found ``sess`` due: keep it (re-armed) if a live hold covers it."""
    hold = ctx.port_maps.peers.get(sess.flow)
    if hold is None or hold.session is not sess:
        return False
    if hold.until <= now:
        del ctx.port_maps.peers[sess.flow]
        ctx.port_maps.count("peer.expired")
        return False
    hold.own = sess.expires  # what the session's own timer says now
    sess.expires = hold.raised = hold.until
    ctx.arm(sess)
    return True


def peer(ctx, proto: int, internal: Endpoint, remote: Endpoint, suggested_port: int,
         until: Optional[float], nonce: bytes, now: float) -> tuple[PeerAnswer, list[Event]]:
    """Create or refresh the mapping for the 5-tuple and hold it until ``until`` (None: lifetime
    0, end the hold); refused with ``nonce-mismatch``, ``no-external-address`` or the drop
    reason the first outbound packet would have met (``port-exhausted``, ``limit-reached``...)."""
    table = ctx.port_maps
    flow = (proto, internal.addr, internal.port, remote.addr, remote.port)
    sess = ctx.by_flow.get(flow)
    hold = table.peers.get(flow)
    if hold is not None and (hold.session is not sess or sess is None or sess.dead or hold.until <= now):
        del table.peers[flow]  # its session ended, or its time ran out: no owner any more
        hold = None
    if hold is not None and hold.nonce != nonce:
        table.count("peer.refused.nonce-mismatch")
        return PeerAnswer(None, now, "nonce-mismatch"), []
    if until is None:
        return _release(ctx, flow, sess, hold, now)
    if not ctx.pool:
        table.count("peer.refused.no-external-address")
        return PeerAnswer(None, now, "no-external-address"), []
    events: list[Event] = []
    created = sess is None
    if sess is None:
        port = suggested_port if suggested_port and not ctx.policy.port_block \
            and is_free(ctx, proto, suggested_port) else 0
        made = ctx.open_session(proto, internal.addr, internal.port, remote.addr, remote.port, 0, now, events,
                                port=port)
        if made.__class__ is Drop:
            table.count(f"peer.refused.{made.reason.value}")
            return PeerAnswer(None, now, made.reason.value), list(made.events)
        sess = made
    if hold is None:
        hold = table.peers[flow] = PeerHold(sess, until, nonce)
        table.count("peer.created")
    else:
        if sess.expires != hold.raised:
            hold.own = sess.expires  # traffic moved it since the hold raised it
        hold.until = until
        table.count("peer.refreshed")
    deadline = max(hold.own, until)  # a shorter refresh shortens the hold, never the own timer
    if deadline != sess.expires:
        sess.expires = deadline
        ctx.arm(sess)
    hold.raised = deadline
    m = sess.mapping
    events.append(Event(EventKind.PORT_MAPPING_CREATED if created else EventKind.PORT_MAPPING_REFRESHED,
                        now, Proto(proto).label, str(internal), str(m.external), str(remote), None,
                        f"pcp peer: held for {until - now:g} s"))
    return PeerAnswer(m.external, max(until, hold.own), created=created), events


def _release(ctx, flow: tuple, sess, hold: Optional[PeerHold], now: float) -> tuple[PeerAnswer, list[Event]]:
    """Lifetime 0: the hold ends; the session goes on by its own timer (RFC 6887 section 15)."""
    if sess is None or sess.dead:
        return PeerAnswer(None, now), []  # nothing there: a delete of nothing succeeds
    events: list[Event] = []
    if hold is not None:
        del ctx.port_maps.peers[flow]
        ctx.port_maps.count("peer.deleted")
        if sess.expires == hold.raised:
            sess.expires = hold.own
        ctx.arm(sess)
        events.append(Event(EventKind.PORT_MAPPING_DELETED, now, Proto(flow[0]).label, str(sess.mapping.internal),
                            str(sess.mapping.external), f"{Endpoint(flow[3], flow[4])}", None,
                            "pcp peer: hold ended; the mapping lives on by its own timer"))
    return PeerAnswer(sess.mapping.external, max(now, sess.expires)), events
