"""The UDP hole-punching traversal matrix on a real namespace lab.

Theory of operation
-------------------
The same experiment as :mod:`natlab.matrix.memory`, with kernel sockets and the gateway
processes instead of the in-memory twin. One lab is brought up once
(:func:`matrix_topology`): alice behind ``nat-a`` and bob behind ``nat-b``, both
homes on the same private subnet as real homes are, and a public ``server``
host running the rendezvous of :mod:`natlab.hostprogs.peer` for the whole matrix. For each
ordered pair of presets (A, B) both gateways are switched with the ``configure``
control op (the whole policy replaced, mappings flushed), then both sides are
started at once in their namespaces and waited for; a side that overruns its
time is killed (by its Popen object).

A side is the built-in peer (``python -m natlab.hostprogs.peer punch``) unless a
:class:`UserApp` is given: a command template for each side and optionally one
for the server, with placeholders filled per pair (see :data:`PLACEHOLDERS`).
With ``port_mapping`` (natpmp, pcp or upnp) both gateways are configured with
that protocol on, and before the punch each side runs natlab's port mapping
client in its namespace (a real client process over kernel sockets, as the
``map_port`` scenario step does) for its port 40000; the mapped endpoint is
offered as one more candidate (the built-in peer's ``--candidate``; ``{mapped}``
in a user command), as the memory matrix does.

A pair succeeded when both sides exited 0 and, if a ``success`` regex is given,
it matches each side's output. The user's server command runs once, like the
built-in rendezvous, for the whole matrix.

:func:`judge` and :func:`fill` are pure; :func:`run_lab_matrix` is the shell.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator, Optional, Sequence

from natlab.errors import ConfigError, LabError
from natlab.realisers.netns.procs import python_module
from natlab.matrix.memory import CLASSIC

__all__ = ["LabMatrix", "PLACEHOLDERS", "PairRun", "SideRun", "UserApp", "fill", "judge",
           "matrix_topology", "run_lab_matrix"]

SERVER_ADDR, RENDEZVOUS_PORT, PEER_PORT = "203.0.113.100", 3478, 40000
PUBLIC = {"alice": "203.0.113.1", "bob": "203.0.113.2"}
GATEWAY = {"alice": "nat-a", "bob": "nat-b"}
GRACE = 5.0
"""Seconds a side may run past its punch timeout (interpreter start-up) before it is killed."""

PLACEHOLDERS = {
    "server": "the rendezvous, ADDR:PORT", "server_addr": "its address", "server_port": "its port",
    "session": "a session id unique to the pair", "self": "this side's name (alice or bob)",
    "peer": "the other side's name", "sport": "the port to punch from (40000)",
    "self_public": "this side's NAT's public address", "peer_public": "the other NAT's public address",
    "self_behaviour": "this side's preset", "peer_behaviour": "the other side's preset",
    "timeout": "seconds a side has to succeed", "python": "this Python interpreter",
    "mapped": "with --port-mapping: this side's mapped endpoint ADDR:PORT (empty if none)",
}
"""What ``{name}`` in a user command becomes."""

_PLACEHOLDER = re.compile(r"(?<!\$)\{([a-z_]+)\}")


def matrix_topology(name: str, seed: int = 0) -> Any:
    """alice behind nat-a, bob behind nat-b (both 192.168.1.0/24), a public server."""
    from natlab.topology import from_data

    return from_data({
        "name": name, "seed": seed,
        "networks": {"internet": {"subnet": "203.0.113.0/24"},
                     "home-a": {"subnet": "192.168.1.0/24"},
                     "home-b": {"subnet": "192.168.1.0/24"}},
        "gateways": {
            "nat-a": {"behaviour": CLASSIC[0], "inside": "home-a", "outside": "internet",
                      "pool": [PUBLIC["alice"]]},
            "nat-b": {"behaviour": CLASSIC[0], "inside": "home-b", "outside": "internet",
                      "pool": [PUBLIC["bob"]]},
        },
        "hosts": {"alice": {"network": "home-a"}, "bob": {"network": "home-b"},
                  "server": {"network": "internet", "address": SERVER_ADDR}},
    })


# --- the pure part ---------------------------------------------------------------


@dataclass(frozen=True)
class UserApp:
    """A user's program in place of the built-in peer: one command template per side."""

    side_a: str
    side_b: str
    server: Optional[str] = None
    success: Optional[str] = None
    """A regex each side's stdout or stderr must match (besides exiting 0)."""

    def __post_init__(self) -> None:
        for option, template in (("--side-a", self.side_a), ("--side-b", self.side_b),
                                 ("--server-cmd", self.server)):
            if template is None:
                continue
            if not template.strip():
                raise ConfigError(f"{option} is empty", hint="give the command to run on that host")
            unknown = sorted(set(_PLACEHOLDER.findall(template)) - set(PLACEHOLDERS))
            if unknown:
                raise ConfigError(f"unknown placeholder in {option}", got=unknown,
                                  hint="known: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS))
            try:
                shlex.split(template)
            except ValueError as err:
                raise ConfigError(f"{option} is not a valid command line", got=template,
                                  hint=str(err)) from err
        if self.success is not None:
            try:
                re.compile(self.success)
            except re.error as err:
                raise ConfigError("--success is not a valid regular expression", got=self.success,
                                  hint=str(err)) from err


def fill(template: str, fields: dict[str, Any]) -> list[str]:
    """A command template -> argv, each word's ``{placeholder}``s replaced (``${VAR}`` kept)."""
    return [_PLACEHOLDER.sub(lambda m: str(fields[m.group(1)]), word) for word in shlex.split(template)]


def side_fields(side: str, presets: dict[str, str], session: str, timeout: float,
                mapped: str = "") -> dict[str, Any]:
    peer = "bob" if side == "alice" else "alice"
    return {"mapped": mapped, "server": f"{SERVER_ADDR}:{RENDEZVOUS_PORT}", "server_addr": SERVER_ADDR,
            "server_port": RENDEZVOUS_PORT, "session": session, "self": side, "peer": peer,
            "sport": PEER_PORT, "self_public": PUBLIC[side], "peer_public": PUBLIC[peer],
            "self_behaviour": presets[side], "peer_behaviour": presets[peer],
            "timeout": f"{timeout:g}", "python": sys.executable}


def builtin_peer(fields: dict[str, Any]) -> list[str]:
    extra = ["--candidate", fields["mapped"]] if fields.get("mapped") else []
    return [*python_module("natlab.hostprogs.peer"), "punch", "--server", fields["server"],
            "--session", fields["session"], "--name", fields["self"],
            "--sport", str(fields["sport"]), "--timeout", fields["timeout"], *extra]


@dataclass(frozen=True)
class SideRun:
    """How one side's process ended, and what it printed."""

    argv: tuple[str, ...]
    returncode: Optional[int]
    """None: it was killed after overrunning its time."""
    stdout: str
    stderr: str
    seconds: float

    @property
    def report(self) -> Optional[dict[str, Any]]:
        """The last JSON object the side printed (the built-in peer's summary), if any."""
        import json

        for line in reversed(self.stdout.splitlines()):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "returncode": self.returncode, "seconds": round(self.seconds, 3),
                "report": self.report, "stdout": self.stdout[-2000:], "stderr": self.stderr[-2000:]}


def judge(sides: Sequence[SideRun], success: Optional[str] = None) -> bool:
    """Both sides exited 0, and ``success`` (if any) matches each side's output."""
    if any(s.returncode != 0 for s in sides):
        return False
    return success is None or all(re.search(success, s.stdout + s.stderr) for s in sides)


@dataclass(frozen=True)
class PairRun:
    alice_behaviour: str
    bob_behaviour: str
    session: str
    ok: bool
    alice: SideRun
    bob: SideRun

    def to_dict(self) -> dict[str, Any]:
        return {"alice": self.alice_behaviour, "bob": self.bob_behaviour, "ok": self.ok,
                "session": self.session, "sides": {"alice": self.alice.to_dict(), "bob": self.bob.to_dict()}}


@dataclass
class LabMatrix:
    """The matrix as :func:`natlab.matrix.memory.run_matrix` gives it, plus every pair's detail."""

    seed: int
    app: Optional[UserApp]
    pairs: dict[tuple[str, str], PairRun] = field(default_factory=dict)
    seconds: float = 0.0
    server_output: str = ""

    @property
    def results(self) -> dict[tuple[str, str], bool]:
        return {key: run.ok for key, run in self.pairs.items()}


# --- the shell -------------------------------------------------------------------


class _Started:
    """A process started in a lab node, its output going to temporary files (never a full pipe)."""

    def __init__(self, lab: Any, node: str, argv: Sequence[str]) -> None:
        self.argv = tuple(argv)
        self.out: IO[str] = tempfile.TemporaryFile("w+")
        self.err: IO[str] = tempfile.TemporaryFile("w+")
        self.started = time.monotonic()
        self.proc = lab.popen(node, list(argv), stdout=self.out, stderr=self.err, text=True)

    def text(self) -> tuple[str, str]:
        self.out.seek(0)
        self.err.seek(0)
        return self.out.read(), self.err.read()

    def finish(self, deadline: float) -> SideRun:
        """Wait until ``deadline`` (monotonic); past it, kill this process."""
        try:
            code: Optional[int] = self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            code = None
        seconds = time.monotonic() - self.started
        stdout, stderr = self.text()
        self.close()
        return SideRun(self.argv, code, stdout, stderr, seconds)

    def close(self) -> None:
        self.out.close()
        self.err.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _start_server(lab: Any, app: Optional[UserApp], timeout: float) -> _Started:
    if app is not None and app.server is not None:
        fields = {**side_fields("alice", {"alice": "", "bob": ""}, "", timeout), "self": "server"}
        server = _Started(lab, "server", fill(app.server, fields))
        ready = lambda: time.monotonic() - server.started > 0.5  # noqa: E731 - no readiness signal
    else:
        argv = [*python_module("natlab.hostprogs.peer"), "rendezvous", "--port", str(RENDEZVOUS_PORT)]
        server = _Started(lab, "server", argv)
        ready = lambda: '"listening"' in server.text()[0]  # noqa: E731
    deadline = time.monotonic() + 10.0
    while not ready():
        if server.proc.poll() is not None or time.monotonic() > deadline:
            stdout, stderr = server.text()
            server.stop()
            server.close()
            raise LabError("the matrix server did not start", got=(stdout + stderr).strip()[-500:] or None,
                           hint="try the server command by hand: natlab exec <server> -- CMD")
        time.sleep(0.02)
    return server


def map_side(lab: Any, side: str, protocol: str) -> str:
    """natlab's port mapping client in ``side``'s namespace maps its port 40000: the endpoint, or ""."""
    from natlab.portmap.client import PortMapRequest
    from natlab.realisers.netns.driver import NetnsDriver

    answer = NetnsDriver(lab).map_port(side, PortMapRequest(protocol, PEER_PORT, external_port=PEER_PORT,
                                                            lifetime=600, timeout=3.0))
    return answer.external or ""


def run_pair(lab: Any, clients: dict[str, Any], a: str, b: str, session: str,
             app: Optional[UserApp], timeout: float, port_mapping: Optional[str] = None) -> PairRun:
    """Configure both gateways for (a, b) (with ``port_mapping`` on, each side maps its port
    first), run both sides at once, judge."""
    presets = {"alice": a, "bob": b}
    overrides = {"port_mapping": {port_mapping: True}} if port_mapping else {}
    for side, preset in presets.items():
        clients[side].configure(preset, overrides)
    mapped = {side: map_side(lab, side, port_mapping) if port_mapping else "" for side in presets}
    started = {}
    try:
        for side in ("alice", "bob"):
            fields = side_fields(side, presets, session, timeout, mapped[side])
            template = None if app is None else (app.side_a if side == "alice" else app.side_b)
            argv = builtin_peer(fields) if template is None else fill(template, fields)
            started[side] = _Started(lab, side, argv)
        deadline = time.monotonic() + timeout + GRACE
        runs = {side: s.finish(deadline) for side, s in started.items()}
    finally:
        for s in started.values():
            s.stop()
    ok = judge(list(runs.values()), None if app is None else app.success)
    return PairRun(a, b, session, ok, runs["alice"], runs["bob"])


def iter_lab_matrix(lab: Any, presets: Sequence[str], seed: int, app: Optional[UserApp],
                    timeout: float, port_mapping: Optional[str] = None) -> Iterator[PairRun]:
    """Every ordered pair on an up lab from :func:`matrix_topology`, one after the other."""
    from natlab.gateway.client import GatewayClient

    clients = {side: GatewayClient(lab.state.gateways[gw]["control_socket"], name=gw)
               for side, gw in GATEWAY.items()}
    for i, (a, b) in enumerate(itertools.product(presets, repeat=2)):
        yield run_pair(lab, clients, a, b, f"s{seed}-{i}-{a}-{b}", app, timeout, port_mapping)


def run_lab_matrix(presets: Iterable[str] = CLASSIC, seed: int = 0, *, app: Optional[UserApp] = None,
                   timeout: float = 3.0, lab_name: Optional[str] = None,
                   progress: Any = None, port_mapping: Optional[str] = None) -> LabMatrix:
    """Bring one matrix lab up, run every ordered pair of ``presets`` on it, take it down."""
    import os

    from natlab.lab import up

    names = tuple(presets)
    out = LabMatrix(seed, app)
    start = time.monotonic()
    with up(matrix_topology(lab_name or f"matrix-{os.getpid()}", seed)) as lab:
        server = _start_server(lab, app, timeout)
        try:
            for run in iter_lab_matrix(lab, names, seed, app, timeout, port_mapping):
                out.pairs[(run.alice_behaviour, run.bob_behaviour)] = run
                if progress is not None:
                    progress(run)
        finally:
            server.stop()
            out.server_output = "".join(server.text())[-4000:]
            server.close()
    out.seconds = time.monotonic() - start
    return out
