"""A built-in UDP hole-punching peer and its rendezvous, for real lab hosts.

``python -m natlab.hostprogs.peer rendezvous --port 3478`` runs on a public host;
``python -m natlab.hostprogs.peer punch --server ADDR:PORT --session ID --name alice`` runs
on each peer. Both print JSON lines on stdout; ``punch`` exits 0 when the two
peers got through to each other and 1 when they did not.

Theory of operation
-------------------
Every datagram is one JSON object with a type ``t``.

*Rendezvous.* A peer sends ``register`` (session, name, host candidates) from its
punching socket. The rendezvous answers with ``binding``: the source endpoint it
saw, which is the peer's server-reflexive endpoint (the idea of a STUN binding,
RFC 8489). When two names have registered under one session, it sends each a
``peer`` message: the other's reflexive endpoint and host candidates. A peer
repeats ``register`` every interval until it has both answers, so a lost datagram
only costs one interval.

*Punching* (ICE connectivity checks, RFC 8445 7.2). Every ``interval`` a peer
sends ``punch`` to every candidate it knows of the other: the reflexive endpoint,
the host candidates, and the source of any punch it had from the peer (a
peer-reflexive candidate, RFC 8445 7.3.1.3). A punch that arrives is answered at
once to its source (a triggered check, 7.3.1.4). Each punch carries ``heard``:
whether the sender has heard the peer yet. A peer succeeds when it has heard the
peer *and* the peer has said ``heard`` — both directions work. It then keeps
answering for ``linger`` seconds so the peer also gets its confirmation.

Messages carry the session and the sender's name, and a peer ignores its own:
both homes may use the same private address, so a host candidate of the peer
can be this very socket.

*Timing.* Which packet gets through depends on who sends first. A peer's first
punch to the other's reflexive endpoint usually arrives before the other has
sent anything towards it, so the other's NAT drops it (no mapping or its filter
is not open yet) — but it opened the sender's own filter for the peer. The
other's next punch then passes, and the answer to it passes the other's now-open
filter. The retries at a short interval are what makes this converge whichever
side starts first, as in real ICE; a NAT pair that cannot be punched (symmetric
against port-restricted or symmetric, see :mod:`natlab.matrix.memory`) fails at the
timeout however many rounds are sent.

Output of ``punch`` (the last line): ``{"event": "punched" | "failed",
"name", "session", "reflexive", "candidates", "heard", "confirmed", "heard_from",
"rounds", "seconds"}``.

*Tracing* (``--trace``, on either command; off by default, and then nothing
above changes): every datagram sent or received is also a line,
``{"event": "sent", "to", "message", "ts", "at"}`` or ``{"event": "received",
"from", "message", "ts", "at"}`` (``ts`` the wall clock, which the gateways'
events carry too; ``at`` seconds since start), and each datagram sent carries
``"n"``, the sender's count, so a receiver's line names the very datagram it
got. :mod:`natlab.explore` draws an attempt's sequence diagram from these lines.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional

Endpoint = tuple[str, int]
MAX_DATAGRAM = 2048


def parse_endpoint(text: str) -> Endpoint:
    """``"203.0.113.100:3478"`` -> ``("203.0.113.100", 3478)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not ADDR:PORT: {text!r}")
    return host, int(port)


def show(endpoint: Endpoint) -> str:
    return f"{endpoint[0]}:{endpoint[1]}"


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def decode(data: bytes) -> Optional[dict[str, Any]]:
    """A message, or None for anything that is not one of ours (never an exception)."""
    try:
        message = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return message if isinstance(message, dict) and isinstance(message.get("t"), str) else None


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


class Trace:
    """``--trace``: number each datagram sent (``"n"``) and say every one sent and received."""

    def __init__(self, on: bool) -> None:
        self.on, self.sent, self.start = on, 0, time.monotonic()

    def stamp(self, to: Endpoint, data: bytes) -> bytes:
        """The datagram as it goes out to ``to`` (numbered, and said, when tracing)."""
        if not self.on:
            return data
        self.sent += 1
        message = {**(decode(data) or {}), "n": self.sent}
        self._say("sent", to=show(to), message=message)
        return encode(message)

    def heard(self, message: Optional[dict[str, Any]], source: Endpoint) -> None:
        if self.on and message is not None:
            self._say("received", **{"from": show(source)}, message=message)

    def _say(self, event: str, **fields: Any) -> None:
        say(event=event, **fields, ts=round(time.time(), 6), at=round(time.monotonic() - self.start, 6))


# --- rendezvous: pure state, then the socket loop -------------------------------


@dataclass
class Sessions:
    """Who registered under which session: session -> name -> (reflexive, host candidates)."""

    registered: dict[str, dict[str, tuple[Endpoint, list[str]]]] = field(default_factory=dict)

    def register(self, message: dict[str, Any], source: Endpoint) -> list[tuple[Endpoint, dict[str, Any]]]:
        """Replies to one ``register``: the binding, and ``peer`` messages once two are in."""
        session, name = str(message.get("session", "")), str(message.get("name", ""))
        hosts = [str(c) for c in message.get("host", []) if isinstance(c, str)]
        members = self.registered.setdefault(session, {})
        members[name] = (source, hosts)
        replies = [(source, {"t": "binding", "session": session, "reflexive": show(source)})]
        others = [n for n in members if n != name]
        if others:
            other = others[0]
            other_source, other_hosts = members[other]
            replies.append((source, {"t": "peer", "session": session, "name": other,
                                     "reflexive": show(other_source), "host": other_hosts}))
            replies.append((other_source, {"t": "peer", "session": session, "name": name,
                                           "reflexive": show(source), "host": hosts}))
        return replies


def rendezvous(port: int, timeout: Optional[float], trace: bool = False) -> int:
    """Answer bindings and pair peers until killed (or ``timeout`` s with nothing heard)."""
    tracer = Trace(trace)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(timeout)
    sessions = Sessions()
    say(event="listening", port=port)
    while True:
        try:
            data, source = sock.recvfrom(MAX_DATAGRAM)
        except socket.timeout:
            say(event="idle", seconds=timeout)
            return 0
        message = decode(data)
        tracer.heard(message, source)
        if message is None or message["t"] != "register":
            say(event="ignored", source=show(source))
            continue
        replies = sessions.register(message, source)
        say(event="registered", session=message.get("session"), name=message.get("name"),
            source=show(source), paired=len(replies) > 1)
        for to, reply in replies:
            sock.sendto(tracer.stamp(to, encode(reply)), to)


# --- the punching peer: pure state, then the socket loop ----------------------


@dataclass
class Punch:
    """One peer's view of a punch; :meth:`on_message` and :meth:`outgoing` are pure."""

    name: str
    session: str
    server: Endpoint
    host: list[str]
    reflexive: Optional[str] = None
    peer: Optional[str] = None
    candidates: list[str] = field(default_factory=list)
    heard: bool = False
    confirmed: bool = False
    heard_from: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """Registered: both our reflexive endpoint and the peer's candidates are known."""
        return self.reflexive is not None and self.peer is not None

    @property
    def done(self) -> bool:
        return self.heard and self.confirmed

    def register(self) -> tuple[Endpoint, bytes]:
        return self.server, encode({"t": "register", "session": self.session, "name": self.name,
                                    "host": self.host})

    def punch(self) -> bytes:
        return encode({"t": "punch", "session": self.session, "from": self.name, "heard": self.heard})

    def outgoing(self) -> list[tuple[Endpoint, bytes]]:
        """What to send this round: register until ready, then a punch to every candidate."""
        if not self.ready:
            return [self.register()]
        return [(parse_endpoint(c), self.punch()) for c in self.candidates]

    def on_message(self, message: dict[str, Any], source: Endpoint) -> list[tuple[Endpoint, bytes]]:
        """Take in one datagram; return the triggered answers to send."""
        if message.get("session") != self.session:
            return []
        kind = message["t"]
        if kind == "binding" and source == self.server:
            self.reflexive = str(message.get("reflexive"))
        elif kind == "peer" and source == self.server and message.get("name") != self.name:
            self.peer = str(message.get("name"))
            self._add(str(message.get("reflexive")))
            for candidate in message.get("host", []):
                self._add(str(candidate))
        elif kind == "punch" and message.get("from") not in (None, self.name):
            self.heard = True
            self.confirmed = self.confirmed or bool(message.get("heard"))
            self._add(show(source))  # peer-reflexive
            if show(source) not in self.heard_from:
                self.heard_from.append(show(source))
            return [(source, self.punch())]
        return []

    def _add(self, candidate: str) -> None:
        if candidate not in self.candidates:
            self.candidates.append(candidate)

    def report(self, rounds: int, seconds: float) -> dict[str, Any]:
        return {"event": "punched" if self.done else "failed", "name": self.name,
                "session": self.session, "peer": self.peer, "reflexive": self.reflexive,
                "candidates": self.candidates, "heard": self.heard, "confirmed": self.confirmed,
                "heard_from": self.heard_from, "rounds": rounds, "seconds": round(seconds, 3)}


def _local_address(server: Endpoint) -> str:
    """The address this host would use towards the server (a host candidate)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(server)
        return probe.getsockname()[0]
    finally:
        probe.close()


def _send_all(sock: socket.socket, datagrams: list[tuple[Endpoint, bytes]], tracer: Trace) -> None:
    for to, data in datagrams:
        try:
            sock.sendto(tracer.stamp(to, data), to)
        except OSError as err:  # e.g. an ICMP error reported on an earlier send
            say(event="send-error", to=show(to), error=str(err))


def punch(server: Endpoint, session: str, name: str, sport: int, timeout: float,
          interval: float = 0.05, linger: float = 0.3, host_candidates: bool = True,
          trace: bool = False, extra: tuple[str, ...] = ()) -> int:
    """Register, punch until both confirmed or ``timeout``; 0 on success, 1 on failure."""
    tracer = Trace(trace)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", sport))
    host = [f"{_local_address(server)}:{sock.getsockname()[1]}"] if host_candidates else []
    host += [c for c in extra if c not in host]  # e.g. a port mapped with NAT-PMP/PCP/UPnP beforehand
    state = Punch(name, session, server, host)
    start = time.monotonic()
    deadline, rounds, next_round, done_at = start + timeout, 0, start, None
    while True:
        now = time.monotonic()
        if done_at is None and state.done:
            done_at = now
            say(event="confirmed", seconds=round(now - start, 3))
        if now >= deadline or (done_at is not None and now >= done_at + linger):
            break
        if now >= next_round:
            if state.ready:
                rounds += 1
            _send_all(sock, state.outgoing(), tracer)
            next_round = now + interval
        readable, _, _ = select.select([sock], [], [], max(0.0, min(next_round, deadline) - now))
        if readable:
            try:
                data, source = sock.recvfrom(MAX_DATAGRAM)
            except OSError as err:  # ICMP port unreachable from an earlier send
                say(event="recv-error", error=str(err))
                continue
            message = decode(data)
            tracer.heard(message, source)
            if message is not None:
                _send_all(sock, state.on_message(message, source), tracer)
    sock.close()
    say(**state.report(rounds, time.monotonic() - start))
    return 0 if state.done else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m natlab.hostprogs.peer",
                                     description="UDP hole-punching peer and rendezvous (JSON lines out).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rendezvous", help="answer bindings and pair peers by session")
    r.add_argument("--port", type=int, default=3478)
    r.add_argument("--timeout", type=float, default=None, help="exit after this long with nothing heard")
    r.add_argument("--trace", action="store_true", help="say every datagram sent and received (numbered)")
    p = sub.add_parser("punch", help="register with the rendezvous, then punch to the peer")
    p.add_argument("--server", required=True, type=parse_endpoint, help="the rendezvous, ADDR:PORT")
    p.add_argument("--session", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--sport", type=int, default=40000)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--interval", type=float, default=0.05, help="seconds between punch rounds")
    p.add_argument("--linger", type=float, default=0.3, help="seconds to keep answering after success")
    p.add_argument("--no-host", action="store_true", help="do not offer host candidates")
    p.add_argument("--candidate", action="append", default=[], metavar="ADDR:PORT",
                   help="offer this endpoint too (a port mapped beforehand); may repeat")
    p.add_argument("--trace", action="store_true", help="say every datagram sent and received (numbered)")
    args = parser.parse_args(argv)
    if args.cmd == "rendezvous":
        return rendezvous(args.port, args.timeout, args.trace)
    return punch(args.server, args.session, args.name, args.sport, args.timeout,
                 args.interval, args.linger, not args.no_host, args.trace, tuple(args.candidate))


if __name__ == "__main__":
    sys.exit(main())
