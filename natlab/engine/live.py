"""Live changes to a running engine: a new policy, a new pool, a reboot.

Mappings survive a new policy unless the mapping behaviour changed (their keys
would mean something else). New timers apply at once: no session outlives
``now`` plus its new timer (RFC 4787 REQ-5 as the user just set it), whereas
refreshes already re-arm with whatever timer is current.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from natlab.engine.policy import Policy
from natlab.engine.ports import PortAllocator, checked_pool
from natlab.engine.types import AddressLike
from natlab.engine.verdicts import Event, EventKind, Tick

if TYPE_CHECKING:
    from natlab.engine.nat import Engine


def reconfigure(engine: "Engine", policy: Policy, now: float) -> Tick:
    """Apply a new policy live. Mappings stay unless the mapping behaviour changed."""
    events: list[Event] = []
    if policy.mapping is not engine.policy.mapping:
        _flush_dynamic(engine, now, events, "mapping behaviour changed")
    retimed = policy.timeouts != engine.policy.timeouts
    engine._set_policy(policy)
    if retimed:
        _rearm_all(engine, now)
    return Tick(tuple(events))


def _rearm_all(engine: "Engine", now: float) -> None:
    for sess in list(engine.by_flow.values()):
        deadline = now + engine._timeout(sess, now)
        if deadline < sess.expires:
            sess.expires = deadline
            if deadline < sess.armed:
                engine._arm(sess)


def set_pool(engine: "Engine", pool: Sequence[AddressLike], now: float) -> Tick:
    """Change the external addresses; mappings on withdrawn addresses end."""
    new = checked_pool(pool)
    events: list[Event] = []
    for m in [m for m in engine.by_external.values() if m.kind == "dynamic" and m.external.addr not in new]:
        engine._remove_mapping(m, now, events, EventKind.MAPPING_EXPIRED, "external address withdrawn")
    engine.pool = new
    engine.allocator.pool = new
    engine._set_policy(engine.policy)
    return Tick(tuple(events))


def flush(engine: "Engine", now: float) -> Tick:
    """A reboot: every dynamic mapping, held SYN, fragment and unreplied entry is forgotten."""
    events: list[Event] = []
    _flush_dynamic(engine, now, events, "flushed")
    engine.allocator = PortAllocator(engine.policy, engine.pool, engine.rng, engine.counters)
    return Tick(tuple(events))


def _flush_dynamic(engine: "Engine", now: float, events: list[Event], why: str) -> None:
    count = 0
    for m in [m for m in engine.by_external.values() if m.kind == "dynamic"]:
        engine._remove_mapping(m, now, None, None, why)
        count += 1
    for m in engine.forwards_by_internal.values():
        for s in list(m.sessions.values()):
            engine._remove_session(s)
    engine.syns.clear()
    engine.frags.clear()
    engine.claims.clear()
    events.append(Event(EventKind.MAPPINGS_FLUSHED, now, detail=f"{count} mappings: {why}"))
