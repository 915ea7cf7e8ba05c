"""The gateway's state and operations, apart from the sockets that feed it.

Theory of operation
-------------------
:class:`Gateway` owns the engine and the gateway clock (``monotonic() +
offset``; ``advance`` moves the offset). The daemon's loop calls
:meth:`Gateway.on_packet` for every queued packet, :meth:`Gateway.on_timer`
when the engine's deadline passes, and :meth:`Gateway.handle` for every
control request. Side effects leave through injected objects (``sender``
for packets the gateway emits, ``pool_hooks`` for addresses and rules), so
tests drive this class without root, sockets or a kernel.

A bug in the engine never kills the gateway: an exception from
``engine.process`` drops the packet, counts an ``engine-error``, logs the
traceback once per distinct error and carries on.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import math
import os
import time
import traceback
from typing import Any, Callable, Iterable, Optional, Protocol, Sequence

from natlab.engine.types import Side
from natlab.engine.verdicts import Drop, Emit, Forward, Hairpin, Tick, drop_records
from natlab.errors import NatlabError
from natlab.gateway import inputs
from natlab.gateway.outcome import DROP, Action, Outcome
from natlab.packet.headers import summarize

log = logging.getLogger("natlab.gateway")
_INSIDE, _ACCEPT = Side.INSIDE, Action.ACCEPT
_outcome = tuple.__new__
"""Makes an :class:`Outcome` from a tuple of both fields (no NamedTuple ``__new__`` per packet)."""

EVENT_RING = 10_000


class Sender(Protocol):
    """Where packets the gateway originates leave (a raw socket; the in-memory network).

    Its answer is the datapath's to use (memory: where the packet went); the gateway ignores it.
    """

    def send(self, packet: bytes | bytearray) -> Any: ...


class PoolHooks(Protocol):
    """What changing the pool does outside the engine (addresses, iptables)."""

    def add_addresses(self, addresses: Sequence[str]) -> None: ...
    def remove_addresses(self, addresses: Sequence[str]) -> None: ...
    def set_rules_pool(self, pool: Sequence[str]) -> None: ...
    def set_rules_static(self, static: Sequence[str]) -> None: ...


class _NoPoolHooks:
    def add_addresses(self, addresses: Sequence[str]) -> None: pass
    def remove_addresses(self, addresses: Sequence[str]) -> None: pass
    def set_rules_pool(self, pool: Sequence[str]) -> None: pass
    def set_rules_static(self, static: Sequence[str]) -> None: pass


def _policy_dict(policy: Any) -> Any:
    if isinstance(policy, dict):
        return policy
    from natlab.behaviours.presets import policy_to_dict

    return policy_to_dict(policy)


ENGINE_ENV = "NATLAB_GATEWAY_ENGINE"
"""``passthrough`` selects :class:`~natlab.gateway.passthrough.PassthroughEngine` (benchmarks)."""


def build_engine(spec: Any) -> tuple[Any, Any]:
    """The engine a :class:`~natlab.gateway.spec.GatewaySpec` asks for, and its policy value."""
    import random

    rng = random.Random(spec.seed)
    if os.environ.get(ENGINE_ENV, "nat") == "passthrough":
        from natlab.gateway.passthrough import PassthroughEngine

        return PassthroughEngine(spec.policy, spec.pool, rng), dict(spec.policy)
    from natlab.behaviours.presets import policy_from_dict
    from natlab.engine import Engine

    policy = policy_from_dict(spec.policy)
    return Engine(policy, spec.pool, rng), policy


class Gateway:
    def __init__(
        self,
        spec: Any,  # GatewaySpec
        engine: Any,
        policy: Any,
        *,
        sender: Sender,
        pool_hooks: PoolHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] | None = time.time,
        publish: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.spec = spec
        self.engine = engine
        self.policy = policy
        self.preset = spec.preset
        """The preset the policy came from (``configure`` replaces it)."""
        self.pool = tuple(spec.pool)
        self.sender = sender
        self.pool_hooks = pool_hooks or _NoPoolHooks()
        self.clock = clock
        self.wallclock = wallclock
        self.publish = publish
        self.offset = 0.0
        self.started = clock()
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENT_RING)
        self.seq = 0
        self.stats = {"packets_inside": 0, "packets_outside": 0, "engine_errors": 0,
                      "truncated": 0, "emitted": 0, "emit_errors": 0, "hairpins_sent": 0}
        self._errors_logged: set[tuple[str, str, int]] = set()
        self.stat_sources: list[Callable[[], dict[str, int]]] = []
        """More counters to report under "gateway" (the daemon adds the queues' own)."""
        self.fast_quantum: Optional[float] = fast_quantum(spec)
        """How long a fast-path entry may live (None: this gateway has no fast path)."""
        self.fast_invalidators: list[Callable[[], None]] = []
        """Callbacks that fold what a datapath's fast-path cache counted (:meth:`fold_fast`)
        and empty it; all run before any op that changes state (:meth:`invalidate_fast`)."""
        self.companions: list[Any] = []
        """Servers beside the NAT (the port mapping shell, :mod:`natlab.gateway.portmap_shell`):
        each one's ``changed(what)`` runs after a "flush", a "pool" change or a new "policy"."""

    # --- clock ---------------------------------------------------------------

    def now(self) -> float:
        return self.clock() + self.offset

    def timeout(self) -> Optional[float]:
        """Seconds until the engine's next deadline (None: none pending)."""
        deadline = self.engine.next_deadline()
        if deadline is None:
            return None
        return max(0.0, deadline - self.now())

    def on_timer(self) -> None:
        deadline = self.engine.next_deadline()
        now = self.now()
        if deadline is not None and deadline <= now:
            self._tick(self.engine.expire(now))

    def expire(self) -> Tick:
        """Let the engine expire whatever is due now (events recorded, emits sent)."""
        return self._tick(self.engine.expire(self.now()))

    # --- packets -------------------------------------------------------------

    def on_packet(self, data: bytes, side: Side) -> Outcome:
        """One packet from a datapath that gives verdicts (NFQUEUE): accept with new bytes, or drop.

        A hairpinned packet leaves through the sender and the original is dropped.
        """
        verdict = self.process(data, side)
        kind = type(verdict)
        if kind is Forward:
            return _outcome(Outcome, (_ACCEPT, verdict.data))
        if kind is Hairpin:
            self.send_hairpin(verdict.data)
        return DROP

    def send_hairpin(self, packet: bytes | bytearray) -> Any:
        """Send a hairpinned packet back inside; what the sender answered (None if it failed)."""
        self.stats["hairpins_sent"] += 1
        return self._send(packet)

    def process(self, data: bytes, side: Side) -> Any:
        """The engine's verdict on one packet, with the bookkeeping every datapath shares.

        Counts it, records its events (or its drop), sends the emits; a hairpinned
        packet is the caller's to send (:meth:`send_hairpin`). None: dropped before
        the engine gave a verdict (truncated, or an engine error), recorded as such.
        """
        stats = self.stats
        if side is _INSIDE:
            stats["packets_inside"] += 1
        else:
            stats["packets_outside"] += 1
        n = len(data)
        if n < 20 or ((data[2] << 8) | data[3]) > n:
            # Cut short by the queue's copy range: rewriting it would corrupt it.
            stats["truncated"] += 1
            self._record({"kind": "dropped", "reason": "truncated", "side": side.value,
                          "packet": summarize(data)}, self.now())
            return None
        now = self.clock() + self.offset  # self.now(), inlined: once per packet
        try:
            verdict = self.engine.process(data, side, now)
        except Exception as err:  # noqa: BLE001 - see the module docstring
            self._engine_error(err, data, side, now)
            return None
        if type(verdict) is Drop:
            self._record_drop(verdict, data, side, now)
        elif verdict.events:
            self._record_events(verdict.events, now)
        if verdict.emits:
            self._send_emits(verdict.emits)
        return verdict

    def _record_drop(self, verdict: Drop, data: bytes, side: Side, now: float) -> None:
        for entry in drop_records(verdict, side, summarize(data)):
            self._record(entry, now)

    def _engine_error(self, err: Exception, data: bytes, side: Side, now: float) -> None:
        self.stats["engine_errors"] += 1
        frames = traceback.extract_tb(err.__traceback__)
        where = frames[-1] if frames else None
        key = (type(err).__name__, where.filename if where else "", where.lineno or 0 if where else 0)
        if key not in self._errors_logged:
            self._errors_logged.add(key)
            log.error("engine error on %s packet %s (logged once per distinct error)",
                      side.value, summarize(data), exc_info=err)
        self._record({"kind": "engine-error", "reason": "engine-error", "side": side.value,
                      "error": f"{type(err).__name__}: {err}", "packet": summarize(data)}, now)

    # --- fast paths (natlab.engine.fastpath) -----------------------------------

    def fast_entry(self, data: bytes | bytearray, side: Side) -> Any:
        """After :meth:`process` forwarded ``data`` (as it arrived): the
        :class:`~natlab.engine.fastpath.FastEntry` a fast path may install, or None."""
        if self.fast_quantum is None:
            return None
        entry_of = getattr(self.engine, "fast_entry", None)  # the passthrough engine has none
        return None if entry_of is None else entry_of(data, side, self.now(), self.fast_quantum)

    def fold_fast(self, entry: Any, packets: int, nbytes: int = 0, last_seen: Optional[float] = None) -> None:
        """``packets`` (``nbytes``) a fast path rewrote for ``entry``, the last at gateway time
        ``last_seen`` (None: now): counted here and in the engine, the session refreshed."""
        if packets <= 0:
            return
        key = "fast_packets_inside" if entry.side is Side.INSIDE else "fast_packets_outside"
        self.stats[key] = self.stats.get(key, 0) + packets
        self.stats["fast_bytes"] = self.stats.get("fast_bytes", 0) + nbytes
        fold = getattr(self.engine, "fold_fast", None)
        if fold is not None:
            fold(entry, packets, self.now() if last_seen is None else last_seen)

    def invalidate_fast(self) -> None:
        """Empty every fast-path cache now: the next packet of every flow meets the engine."""
        for clear in self.fast_invalidators:
            clear()
        if self.fast_invalidators:
            self.stats["fast_flushes"] = self.stats.get("fast_flushes", 0) + 1

    # --- emits and events ----------------------------------------------------

    def _send(self, packet: bytes | bytearray) -> Any:
        try:
            answer = self.sender.send(packet)
            self.stats["emitted"] += 1
            return answer
        except OSError as err:
            self.stats["emit_errors"] += 1
            log.warning("could not send %s: %s", summarize(bytes(packet)), err)
            return None

    def _send_emits(self, emits: Iterable[Emit]) -> None:
        for emit in emits:
            self._send(emit.data)

    def _tick(self, tick: Tick) -> Tick:
        now = self.now()
        if tick.events:
            self._record_events(tick.events, now)
        if tick.emits:
            self._send_emits(tick.emits)
        return tick

    def record_tick(self, tick: Tick) -> Tick:
        """Record a tick's events and send its emits (for companions that change the engine)."""
        return self._tick(tick)

    def record(self, entry: dict[str, Any]) -> None:
        """Record one event of a companion's own (numbered, stamped, published)."""
        self._record(entry, self.now())

    def _changed(self, what: str) -> None:
        for companion in self.companions:
            companion.changed(what)

    def _record_events(self, events: Iterable[Any], now: float) -> None:
        for event in events:
            self._record(event.to_dict(), now)

    def _record(self, entry: dict[str, Any], now: float) -> None:
        self.seq += 1
        entry["seq"] = self.seq
        if self.wallclock is not None:  # None: no wall clock (the in-memory network), no "ts"
            entry["ts"] = round(self.wallclock(), 6)
        entry.setdefault("at", round(now, 6))
        entry["gateway"] = self.spec.name
        self.events.append(entry)
        if self.publish is not None:
            self.publish(entry)

    # --- control operations --------------------------------------------------

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control request in, one response out (see :mod:`natlab.gateway.control`)."""
        op = request.get("op")
        if not isinstance(op, str) or op not in self._OPS:
            return {"ok": False, "error": f"unknown op {op!r} (ops: {', '.join(sorted(self._OPS))})"}
        try:
            return {"ok": True, **self.request(request)}
        except (ValueError, TypeError, KeyError, NatlabError) as err:
            message = getattr(err, "message", None) or str(err)
            return {"ok": False, "error": message}

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control request, its errors raised as they are (in-process callers: the memory tier)."""
        op = request.get("op")
        method = self._OPS.get(op) if isinstance(op, str) else None
        if method is None:
            raise ValueError(f"unknown op {op!r} (ops: {', '.join(sorted(self._OPS))})")
        if op not in self.READ_ONLY_OPS:
            # Before the change: no cached entry may outlive the state that made it.
            self.invalidate_fast()
        return method(self, request)

    def op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "name": self.spec.name}

    def op_status(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": self.spec.name, "lab": self.spec.lab, "netns": self.spec.netns,
            "pid": os.getpid(), "preset": self.preset, "pool": list(self.pool),
            "engine": type(self.engine).__name__, "datapath": getattr(self.spec, "datapath", None),
            "uptime": round(self.clock() - self.started, 3),
            "clock_offset": self.offset, "now": self.now(),
            "counters": self.counters(), "policy": _policy_dict(self.policy),
        }

    def counters(self) -> dict[str, Any]:
        own = dict(self.stats)
        for source in self.stat_sources:
            own.update(source())
        return {**self.engine.counters.snapshot(), "gateway": own}

    def op_counters(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"counters": self.counters()}

    def op_mappings(self, request: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        rows = []
        for view in self.engine.mappings(now):
            row = view.to_dict()
            row["expires_in"] = None if view.expires is None else round(view.expires - now, 3)
            rows.append(row)
        return {"now": now, "mappings": rows}

    def op_events(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("follow"):
            return {"follow": True}
        limit = int(request.get("limit", 1000))
        since = int(request.get("since", 0))
        recent = [e for e in self.events if e["seq"] > since]
        return {"events": recent[-limit:] if limit > 0 else []}

    def op_set(self, request: dict[str, Any]) -> dict[str, Any]:
        from natlab.behaviours.overrides import parse_assignments
        from natlab.behaviours.presets import apply_overrides

        assignments = request.get("assignments")
        if not isinstance(assignments, list) or not all(isinstance(a, str) for a in assignments):
            raise ValueError('"assignments" must be a list of "knob=value" strings')
        policy = apply_overrides(self.policy, parse_assignments(assignments))  # conflicts: _reconfigure
        self.apply_policy(policy, " ".join(assignments))
        return {"policy": _policy_dict(policy)}

    def apply_policy(self, policy: Any, detail: str = "") -> None:
        """A new policy value, live (mappings stay unless the mapping behaviour changed)."""
        self._reconfigure(policy)
        self._record({"kind": "reconfigured", "detail": detail}, self.now())

    def _reconfigure(self, policy: Any) -> None:
        """A new policy; static 1:1 externals it adds or drops answer ARP (or stop) like the
        pool, and are hairpin destinations like the pool (RFC 4787 REQ-9)."""
        self._check_conflicts(policy)
        before = self._static_externals()
        self._tick(self.engine.reconfigure(policy, self.now()))
        self.policy = policy
        after = self._static_externals()
        self.pool_hooks.add_addresses([a for a in after if a not in before])
        if after != before:
            self.pool_hooks.set_rules_static(after)
        self.pool_hooks.remove_addresses([a for a in before if a not in after])
        self._changed("policy")

    def _surroundings(self) -> dict[str, Any]:
        """The pool and subnets a live policy is checked against (as a topology's is)."""
        inside = tuple(getattr(self.spec, "inside_subnets", ()) or ())
        outside = getattr(self.spec, "outside_subnet", None)
        return {"pool": self.pool,
                "inside": ipaddress.ip_network(inside[0], strict=False) if len(inside) == 1 else None,
                "outside": ipaddress.ip_network(outside, strict=False) if outside else None}

    def _check_conflicts(self, policy: Any) -> None:
        """Refuse a live policy whose static/forwards clash with the pool or the subnets."""
        from natlab.errors import combined
        from natlab.topology.conflicts import policy_problems

        problems = policy_problems(policy, **self._surroundings())
        if problems:
            raise combined([p.error() for p in problems])

    def _static_externals(self) -> tuple[str, ...]:
        return tuple(a for a in getattr(self.engine, "external_addresses", ()) if a not in self.pool)

    def op_advance(self, request: dict[str, Any]) -> dict[str, Any]:
        seconds = request.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not math.isfinite(seconds) or seconds < 0:
            # inf would expire every mapping for good; NaN would make the clock NaN.
            raise ValueError(f'"seconds" must be a finite number >= 0, got {seconds!r}')
        self.offset += float(seconds)
        tick = self._tick(self.engine.expire(self.now()))
        return {"clock_offset": self.offset, "now": self.now(), "events": len(tick.events)}

    def op_flush(self, request: dict[str, Any]) -> dict[str, Any]:
        tick = self._tick(self.engine.flush(self.now()))
        self._changed("flush")
        return {"events": len(tick.events)}

    def op_set_pool(self, request: dict[str, Any]) -> dict[str, Any]:
        new = inputs.validate_pool(request.get("pool"))
        old = self.pool
        self.pool_hooks.add_addresses([a for a in new if a not in old])
        self._tick(self.engine.set_pool(new, self.now()))
        self.pool = new
        self.pool_hooks.set_rules_pool(new)
        self.pool_hooks.remove_addresses([a for a in old if a not in new])
        self._record({"kind": "pool-changed", "detail": " ".join(new)}, self.now())
        self._changed("pool")
        return {"pool": list(new)}

    def op_configure(self, request: dict[str, Any]) -> dict[str, Any]:
        """Replace the whole policy with a preset (plus overrides) and flush every mapping."""
        from natlab.behaviours.presets import resolve

        behaviour, overrides = request.get("behaviour"), request.get("overrides") or {}
        if not isinstance(behaviour, str) or not behaviour:
            raise ValueError(f'"behaviour" must be a preset name or path, got {behaviour!r}')
        if not isinstance(overrides, dict):
            raise ValueError(f'"overrides" must be an object of knob: value, got {overrides!r}')
        inputs.allowed_preset(behaviour, getattr(self.spec, "behaviour_dirs", ()))
        policy = resolve(behaviour, overrides).policy
        self._reconfigure(policy)
        tick = self._tick(self.engine.flush(self.now()))
        self._changed("flush")
        self.preset = behaviour
        detail = " ".join([behaviour, *(f"{k}={v}" for k, v in sorted(overrides.items()))])
        self._record({"kind": "reconfigured", "detail": detail}, self.now())
        return {"preset": behaviour, "policy": _policy_dict(policy), "events": len(tick.events)}

    READ_ONLY_OPS = frozenset({"ping", "status", "counters", "mappings", "events"})
    """Ops that change nothing: every other op empties the fast-path caches first."""

    _OPS: dict[str, Callable[["Gateway", dict[str, Any]], dict[str, Any]]] = {
        "ping": op_ping, "status": op_status, "counters": op_counters, "mappings": op_mappings,
        "events": op_events, "set": op_set, "advance": op_advance, "flush": op_flush,
        "set-pool": op_set_pool, "configure": op_configure,
    }


DEFAULT_FAST_QUANTUM = 1.0
"""Seconds a fast-path entry lives at most (``kernel_cache.quantum``, ``dpdk.quantum``)."""


def fast_quantum(spec: Any) -> Optional[float]:
    """The fast-path quantum the spec's datapath options give (None: no fast path)."""
    extra = getattr(spec, "extra", None) or {}
    options = extra.get(str(getattr(spec, "datapath", "")).replace("-", "_"))
    if not isinstance(options, dict):
        return None
    return float(options.get("quantum", DEFAULT_FAST_QUANTUM))
