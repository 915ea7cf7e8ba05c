"""Live changes to a running NAT: a new policy, a new pool, a reboot.

Mappings survive a new policy unless the mapping behaviour changed (their keys
would mean something else). New timers apply at once: no session outlives
``now`` plus its new timer (RFC 4787 REQ-5 as the user just set it), whereas
refreshes already re-arm with whatever timer is current.

Each change is a transition of :class:`~natlab.engine.state.NatState`, made
through its public methods; the engine re-reads its configuration afterwards.
"""

from __future__ import annotations

from typing import Sequence

from natlab.engine import port_mappings
from natlab.engine.policy import Policy
from natlab.engine.ports import checked_pool
from natlab.engine.state import NatState
from natlab.engine.types import AddressLike
from natlab.engine.verdicts import Event, EventKind, Tick


def reconfigure(state: NatState, policy: Policy, now: float) -> Tick:
    """Apply a new policy live. Mappings stay unless the mapping behaviour changed."""
    events: list[Event] = []
    if policy.mapping is not state.policy.mapping:
        _flush_dynamic(state, now, events, "mapping behaviour changed")
    retimed = policy.timeouts != state.policy.timeouts
    state.set_policy(policy)
    port_mappings.reconcile(state, now, events)
    if retimed:
        _rearm_all(state, now)
    return Tick(tuple(events))


def _rearm_all(state: NatState, now: float) -> None:
    for sess in state.sessions():
        deadline = now + state.timeout(sess, now)
        if deadline < sess.expires:
            sess.expires = deadline
            if deadline < sess.armed:
                state.arm(sess)


def set_pool(state: NatState, pool: Sequence[AddressLike], now: float) -> Tick:
    """Change the external addresses; mappings on withdrawn addresses end."""
    events: list[Event] = []
    state.set_pool(checked_pool(pool), now, events)
    port_mappings.withdraw(state, now, events)
    return Tick(tuple(events))


def flush(state: NatState, now: float) -> Tick:
    """A reboot: every dynamic and explicit mapping, held SYN, fragment and unreplied entry is forgotten."""
    events: list[Event] = []
    _flush_dynamic(state, now, events, "flushed")
    port_mappings.flush(state, now, events)
    state.new_allocator()
    return Tick(tuple(events))


def _flush_dynamic(state: NatState, now: float, events: list[Event], why: str) -> None:
    count = 0
    for m in state.dynamic_mappings():
        state.remove_mapping(m, now, None, None, why)
        count += 1
    for sess in state.forward_sessions():
        state.remove_session(sess)
    state.clear_side_tables()
    events.append(Event(EventKind.MAPPINGS_FLUSHED, now, detail=f"{count} mappings: {why}"))
