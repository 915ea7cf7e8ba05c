"""The ``punch`` step: UDP hole punching between two hosts with natlab's built-in peer.

Theory of operation
-------------------
A :class:`Plan` names two peers, the host running the rendezvous and the
peer's own settings (``--sport``, ``--timeout``, ``--interval``, ``--linger``).
:func:`run_punch` carries it out on a :class:`~natlab.realisers.base.Driver`
and says how it went (a :class:`PunchRun`); it asks the realiser's trait, not
its name, which of two shells to use:

- *Hosts run programs* (netns, Docker): :func:`with_programs` starts the very
  program the traversal matrix runs, ``python -m natlab.hostprogs.peer``:
  the rendezvous first (``spawn``, until it says ``listening``), then
  ``punch`` on both peers at once, and waits for them (``--timeout`` plus
  :data:`GRACE`). The rendezvous runs with an idle ``--timeout`` of
  :data:`RENDEZVOUS_IDLE`: once both peers are paired nothing talks to it, so
  it exits by itself and the port is free for the next attempt. Whatever
  overruns is left to the driver's ``stop_spawned``, which ends it by PID
  (the scenario runner does at the end; the workbench at once).
- *Hosts cannot* (the memory twin): :func:`in_process` runs the peer's own
  sans-I/O core, :class:`~natlab.hostprogs.peer.Punch` for each peer and
  :class:`~natlab.hostprogs.peer.Sessions` for the rendezvous, in this process,
  with the loop of :func:`natlab.hostprogs.peer.punch` played on the twin's
  manual clock: every ``interval`` each peer (alternating who goes first)
  sends what its ``outgoing()`` says, every datagram is one driver probe
  (its payload the peer's message; the receiver's view of its source is what
  ``on_message`` gets), answers go out at once, and ``sleep(interval)`` moves
  the clock. Time stands still while a datagram is in flight, so the
  ping-pong of triggered answers (RFC 8445 7.3.1.4) is cut after
  :data:`MAX_ANSWERS` answers a check; the next round's checks carry the
  same news. A peer that is done stops after ``linger``, and then nobody
  listens on its port, as when the program has exited.

Either way a peer succeeded when it heard the other and the other said it had
heard it too (``punched``); the step's outcome is both peers' (``ok``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from natlab.errors import LabError
from natlab.hostprogs.peer import Punch, Sessions, decode, encode, parse_endpoint
from natlab.realisers.base import Driver, Probe, ProbeResult, json_lines

__all__ = ["GRACE", "MAX_ANSWERS", "Plan", "PunchRun", "Side", "in_process", "run_punch", "spec_problems",
           "with_programs"]

GRACE = 5.0
"""Seconds a peer may run past its ``--timeout`` (interpreter start-up) before it counts as stuck."""
RENDEZVOUS_IDLE = 2.0
"""The rendezvous exits after this long with nothing heard (peers re-register until paired)."""
READY = 10.0
"""Seconds the rendezvous may take to say it is listening."""
POLL = 0.05
MAX_ANSWERS = 2
"""In memory: answers to answers sent at once per check (see the module docstring)."""

Carry = Callable[[Probe, dict[str, Any], str], ProbeResult]
"""How :func:`in_process` sends one datagram: (probe, the message, its sender) -> the result."""


@dataclass(frozen=True)
class Plan:
    """One hole-punching attempt: ``peers`` punch through the rendezvous on host ``rendezvous``:``port``."""

    peers: tuple[str, str]
    rendezvous: str
    port: int = 3478
    sport: int = 40000
    """Each peer's punching port (the peer's ``--sport``)."""
    timeout: float = 3.0
    """Seconds each peer has (``--timeout``; the traversal matrix gives 3)."""
    interval: float = 0.05
    """Seconds between rounds of checks (``--interval``)."""
    linger: float = 0.3
    """Seconds a peer keeps answering once done (``--linger``)."""


@dataclass(frozen=True)
class Side:
    """How one program (a peer, or the rendezvous) ended, and what it said."""

    name: str
    host: str
    returncode: Optional[int]
    """None: still running when its time was up (``stop_spawned`` ends it)."""
    report: Optional[dict[str, Any]] = None
    """A peer's last line (``punched`` / ``failed``, candidates, heard ...)."""
    lines: tuple[dict[str, Any], ...] = ()
    """Every JSON line it printed (with ``--trace``: each datagram sent and received)."""
    output: str = ""

    @property
    def punched(self) -> bool:
        return self.returncode == 0 and (self.report or {}).get("event") == "punched"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "returncode": self.returncode, "report": self.report,
                "punched": self.punched, "output": self.output[-2000:]}


@dataclass(frozen=True)
class PunchRun:
    """What an attempt did: each peer's side, the rendezvous, how it was run and for how long."""

    plan: Plan
    how: str
    """``program`` (the built-in peer ran on the hosts) or ``in-process`` (its core, on the twin)."""
    sides: dict[str, Side]
    rendezvous: Side
    seconds: float
    """Wall-clock seconds (programs) or the twin's clock (in-process)."""
    started: float = 0.0
    """The wall clock when it started (0 in memory)."""
    session: str = ""

    @property
    def ok(self) -> bool:
        """Both peers punched: each heard the other and was told it was heard."""
        return all(s.punched for s in self.sides.values())

    def summary(self) -> str:
        a, b = self.plan.peers
        what = "punched" if self.ok else "failed"
        parts = [f"{n}: {s.report.get('event') if s.report else 'no report'}"
                 + ("" if s.returncode is not None else " (still running at its deadline)")
                 for n, s in self.sides.items()]
        return (f"{a} <-> {b} via {self.plan.rendezvous}: {what} in {self.seconds:.2f} s "
                f"({'the built-in peer' if self.how == 'program' else 'the peer core, in memory'}; "
                + ", ".join(parts) + ")")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "how": self.how, "seconds": round(self.seconds, 3), "session": self.session,
                "sides": {n: s.to_dict() for n, s in self.sides.items()}, "rendezvous": self.rendezvous.to_dict()}


def spec_problems(spec: Any, hosts: Optional[list[str]]) -> list[tuple[str, tuple, Any, str]]:
    """What is wrong with a ``punch`` step (what, key path below it, got, hint): two different peers
    and a rendezvous that is neither, all hosts (``hosts``: None when the topology is unreadable);
    an interval shorter than the timeout."""
    from natlab.model_errors import did_you_mean

    out: list[tuple[str, tuple, Any, str]] = []
    for key, name in [(("peers", i), p) for i, p in enumerate(spec.peers)] + [(("rendezvous",), spec.rendezvous)]:
        if hosts is not None and name not in hosts:
            out.append((f"no host named '{name}' in the topology", key, name,
                        did_you_mean(name, hosts) + "hosts: " + (", ".join(hosts) or "none")))
    if spec.peers[0] == spec.peers[1]:
        out.append(("a host cannot punch to itself", ("peers",), spec.peers, "name two different hosts, e.g. [alice, bob]"))
    if spec.rendezvous in spec.peers:
        out.append(("the rendezvous runs on a third host", ("rendezvous",), spec.rendezvous,
                    "a public host both peers reach, e.g. server"))
    if spec.interval >= spec.timeout:
        out.append(("interval must be shorter than timeout", ("interval",), spec.interval,
                    f"e.g. interval: 0.05 with timeout: {spec.timeout:g}"))
    return out


def run_punch(driver: Driver, plan: Plan, tag: str, *, trace: bool = False, wait_rendezvous: bool = True,
              carry: Optional[Carry] = None) -> PunchRun:
    """Carry out ``plan``: the built-in peer where hosts run programs, else its core in process.

    ``tag`` names what is spawned (unique per attempt); ``trace`` asks the programs for
    every datagram; without ``wait_rendezvous`` the caller ends the rendezvous itself
    (``stop_spawned``) instead of waiting for it to go idle; ``carry`` replaces
    ``driver.probe`` in memory (to watch each datagram).
    """
    from natlab.realisers.registry import get

    if get(driver.backend).runs_programs:
        return with_programs(driver, plan, tag, trace=trace, wait_rendezvous=wait_rendezvous)
    return in_process(driver, plan, tag, carry=carry)


# --- the shell for real hosts: the program itself ------------------------------------------

def peer_argv(plan: Plan, server: str, session: str, name: str, trace: bool) -> list[str]:
    """``python -m natlab.hostprogs.peer punch ...`` as the matrix starts it (plus the plan's timing)."""
    from natlab.realisers.netns.procs import python_module

    argv = [*python_module("natlab.hostprogs.peer"), "punch", "--server", f"{server}:{plan.port}",
            "--session", session, "--name", name, "--sport", str(plan.sport), "--timeout", f"{plan.timeout:g}",
            "--interval", f"{plan.interval:g}", "--linger", f"{plan.linger:g}"]
    return argv + (["--trace"] if trace else [])


def rendezvous_argv(plan: Plan, trace: bool) -> list[str]:
    from natlab.realisers.netns.procs import python_module

    argv = [*python_module("natlab.hostprogs.peer"), "rendezvous", "--port", str(plan.port),
            "--timeout", f"{RENDEZVOUS_IDLE:g}"]
    return argv + (["--trace"] if trace else [])


def _side(driver: Driver, name: str, host: str, spawned: str) -> Side:
    got = driver.spawned_output(spawned)
    lines = tuple(json_lines(got.stdout))
    reports = [ln for ln in lines if ln.get("event") in ("punched", "failed")]
    return Side(name, host, None if got.returncode == -1 else got.returncode, reports[-1] if reports else None,
                lines, got.stdout + got.stderr)


def _wait_exit(driver: Driver, names: list[str], deadline: float) -> None:
    while any(driver.spawned_output(n).returncode == -1 for n in names) and time.monotonic() < deadline:
        time.sleep(POLL)


def with_programs(driver: Driver, plan: Plan, tag: str, *, trace: bool = False,
                  wait_rendezvous: bool = True) -> PunchRun:
    """The rendezvous and both peers as programs on their hosts (see the module docstring)."""
    server = driver.addresses(plan.rendezvous)[0]
    session = f"{tag}-{uuid.uuid4().hex[:8]}"
    names = {"rendezvous": f"{tag}-rendezvous", **{p: f"{tag}-{p}" for p in plan.peers}}
    started, t0 = time.time(), time.monotonic()
    driver.spawn(plan.rendezvous, rendezvous_argv(plan, trace), names["rendezvous"])
    deadline = t0 + READY
    while '"listening"' not in (got := driver.spawned_output(names["rendezvous"])).stdout:
        if got.returncode != -1 or time.monotonic() > deadline:
            raise LabError(f"the rendezvous did not start on {plan.rendezvous}",
                           got=got.stdout.strip()[-400:] or "no output",
                           hint=f"is port {plan.port}/udp already in use there?")
        time.sleep(POLL)
    for peer in plan.peers:
        driver.spawn(peer, peer_argv(plan, server, session, peer, trace), names[peer])
    _wait_exit(driver, [names[p] for p in plan.peers], time.monotonic() + plan.timeout + GRACE)
    if wait_rendezvous:
        _wait_exit(driver, [names["rendezvous"]], time.monotonic() + RENDEZVOUS_IDLE + GRACE)
    sides = {p: _side(driver, p, p, names[p]) for p in plan.peers}
    return PunchRun(plan, "program", sides, _side(driver, "rendezvous", plan.rendezvous, names["rendezvous"]),
                    time.monotonic() - t0, started, session)


# --- the shell for the twin: the peer's core, in process ------------------------------------

@dataclass
class _Twin:
    """The state of an in-process attempt: the peers' and the rendezvous' cores, who has stopped."""

    driver: Driver
    plan: Plan
    carry: Carry
    server: tuple[str, int]
    peers: dict[str, Punch]
    sessions: Sessions = field(default_factory=Sessions)
    stopped: set[str] = field(default_factory=set)

    def receiver(self, sender: str, to: tuple[str, int], message: dict[str, Any]) -> tuple[Optional[str], int]:
        """Who a datagram is meant for, and on which port (None: nobody listens any more)."""
        if message.get("t") == "register":
            return self.plan.rendezvous, self.plan.port
        if sender == self.plan.rendezvous:
            members = self.sessions.registered.get(str(message.get("session")), {})
            name = next((n for n, (source, _) in members.items() if source == to), None)
        else:
            name = next(p for p in self.plan.peers if p != sender)
        return (None if name is None or name in self.stopped else name), self.plan.sport

    def send(self, sender: str, to: tuple[str, int], data: bytes, answers: int = 0) -> None:
        message = decode(data) or {}
        receiver, listen = self.receiver(sender, to, message)
        sport = self.plan.port if sender == self.plan.rendezvous else self.plan.sport
        probe = Probe(proto="udp", src=sender, dst=to[0], dport=to[1], sport=sport, receiver=receiver,
                      listen_port=listen if receiver else 0, payload=data.decode())
        result = self.carry(probe, message, sender)
        if receiver is None or not result.delivered or not result.seen:
            return
        source = parse_endpoint(result.seen)
        if receiver == self.plan.rendezvous:
            for back, reply in self.sessions.register(message, source):
                self.send(receiver, back, encode(reply), answers)
        elif answers < MAX_ANSWERS:
            for back, answer in self.peers[receiver].on_message(message, source):
                self.send(receiver, back, answer, answers + 1)


def in_process(driver: Driver, plan: Plan, session: str, *, carry: Optional[Carry] = None) -> PunchRun:
    """The peer's core on a driver whose hosts cannot run it (see the module docstring)."""
    server = (driver.addresses(plan.rendezvous)[0], plan.port)
    peers = {p: Punch(p, session, server, [f"{driver.addresses(p)[0]}:{plan.sport}"]) for p in plan.peers}
    twin = _Twin(driver, plan, carry or (lambda probe, _m, _s: driver.probe(probe)), server, peers)
    rounds = dict.fromkeys(plan.peers, 0)
    done_at: dict[str, Optional[float]] = dict.fromkeys(plan.peers, None)
    ended: dict[str, float] = {}
    tick = 0
    while len(ended) < len(peers):
        now = round(tick * plan.interval, 9)
        for name in plan.peers if tick % 2 == 0 else tuple(reversed(plan.peers)):
            state = peers[name]
            if name in ended:
                continue
            if done_at[name] is None and state.done:
                done_at[name] = now
            if now >= plan.timeout or (done_at[name] is not None and now >= done_at[name] + plan.linger):
                ended[name] = now
                twin.stopped.add(name)
                continue
            if state.ready:
                rounds[name] += 1
            for to, data in state.outgoing():
                twin.send(name, to, data)
        if len(ended) < len(peers):
            driver.sleep(plan.interval)
            tick += 1
    sides = {}
    for name, state in peers.items():
        report = state.report(rounds[name], ended[name])
        sides[name] = Side(name, name, 0 if state.done else 1, report, (report,), json.dumps(report))
    return PunchRun(plan, "in-process", sides, Side("rendezvous", plan.rendezvous, 0), max(ended.values()),
                    session=session)
