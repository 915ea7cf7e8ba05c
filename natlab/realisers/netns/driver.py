"""The :class:`~natlab.realisers.base.Driver` for a real network-namespace lab.

Probes are real kernel sockets: ``python -m natlab.hostprogs.probe listen`` starts in the
receiving host's namespace, then ``python -m natlab.hostprogs.probe send`` in the sender's;
both print JSON lines, read back here. A ``keep_open`` TCP probe's two programs say
``held`` and keep their connection open; they are stopped (by PID, their own session)
when the driver closes. Gateway operations go to each gateway's
control socket. Spawned commands write to files in the lab's run directory, so
their output survives them and lands in the report.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

from natlab.errors import LabError
from natlab.realisers.netns.procs import python_module
from natlab.realisers.base import PORTLESS, Probe, ProbeResult, RunResult, json_lines
from natlab.realisers.netns.realiser import NetnsRealiser

__all__ = ["NetnsDriver"]

_START_GRACE = 5.0
"""Seconds a listener may take to start (Python start-up in a namespace)."""


class NetnsDriver:
    """Drive a :class:`natlab.lab.Lab`; ``owns`` = take it down on :meth:`close`."""

    backend = NetnsRealiser.name
    """The realiser that made the lab (docker labs are driven the same way; it says so)."""

    def __init__(self, lab: Any, *, owns: bool = False) -> None:
        self.lab = lab
        self.owns = owns
        self._spawned: dict[str, tuple[subprocess.Popen, Path]] = {}
        self._held: list[subprocess.Popen] = []
        """Probe programs holding a ``keep_open`` connection, stopped by :meth:`close`."""
        self._clients: dict[str, Any] = {}

    # -- names ---------------------------------------------------------------------
    def hosts(self) -> list[str]:
        return list(self.lab.state.hosts)

    def gateways(self) -> list[str]:
        return list(self.lab.state.gateways)

    def addresses(self, node: str) -> list[str]:
        if node in self.lab.state.gateways:
            return list(self._client(node).status()["pool"])
        return [str(a) for a in self.lab.host_addresses(node)]

    def _client(self, gateway: str) -> Any:
        from natlab.gateway.client import GatewayClient

        if gateway not in self._clients:
            entry = self.lab.state.gateways[gateway]
            self._clients[gateway] = GatewayClient(entry["control_socket"], name=gateway)
        return self._clients[gateway]

    # -- probes ----------------------------------------------------------------------
    def probe(self, probe: Probe) -> ProbeResult:
        token = f"natlab-{uuid.uuid4().hex[:12]}"
        common = ["--proto", probe.proto, "--token", token]
        flags = [*(["--reply"] if probe.reply else []), *(["--keep-open"] if probe.keep_open else [])]
        listener = None
        if probe.receiver is not None:
            argv = [*python_module("natlab.hostprogs.probe"), "listen", *common,
                    "--port", str(probe.port_at_receiver), "--timeout", str(probe.timeout * 2 + 1), *flags]
            listener = self.lab.popen(probe.receiver, argv, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True)
            self._await_listening(listener, probe)
        to = probe.dst if probe.proto in PORTLESS else f"{probe.dst}:{probe.dport}"
        argv = [*python_module("natlab.hostprogs.probe"), "send", *common, "--to", to,
                "--sport", str(probe.sport), "--timeout", str(probe.timeout), *flags]
        if probe.keep_open:
            said, stderr = self._send_held(probe, argv)
        else:
            sent = self.lab.exec(probe.src, argv, capture_output=True, text=True,
                                 timeout=probe.timeout + _START_GRACE)
            said, stderr = json_lines(sent.stdout), sent.stderr
        heard = self._finish_listener(listener, probe)
        return self._result(probe, said, heard, stderr)

    def _send_held(self, probe: Probe, argv: list[str]) -> tuple[list[dict[str, Any]], str]:
        """Run a ``keep_open`` sender until it says ``held`` (it then stays) or exits."""
        proc = self.lab.popen(probe.src, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
        said = _lines_until(proc, "held", probe.timeout + _START_GRACE)
        if said and said[-1].get("event") == "held":
            self._held.append(proc)
            return said, ""
        _stop(proc)
        _, err = proc.communicate()
        return said, err

    def _await_listening(self, proc: subprocess.Popen, probe: Probe) -> None:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], _START_GRACE)
        line = proc.stdout.readline() if ready else ""
        if '"listening"' not in line:
            proc.kill()
            _, err = proc.communicate()
            raise LabError(f"the probe listener on '{probe.receiver}' did not start",
                           got=(line + err).strip()[-400:] or "no output",
                           hint=f"is port {probe.port_at_receiver}/{probe.proto} already in use there?")

    def _finish_listener(self, proc: Optional[subprocess.Popen], probe: Probe) -> list[dict[str, Any]]:
        if proc is None:
            return []
        if probe.keep_open:
            heard = _lines_until(proc, "held", probe.timeout + 0.5)
            if heard and heard[-1].get("event") == "held":
                self._held.append(proc)
            else:
                _stop(proc)
                proc.communicate()
            return heard
        try:
            out, _ = proc.communicate(timeout=probe.timeout + 0.5)
        except subprocess.TimeoutExpired:
            proc.kill()  # nothing came: the listener would only report a timeout
            out, _ = proc.communicate()
        return json_lines(out)

    @staticmethod
    def _result(probe: Probe, said: list[dict], heard: list[dict], stderr: str) -> ProbeResult:
        recv = next((e for e in heard if e.get("event") == "recv"), None)
        sport = next((e.get("sport", 0) for e in said if e.get("event") in ("sent", "connected")), 0)
        reply = next((e for e in said if e.get("event") == "reply"), None)
        trouble = next((e for e in said if e.get("event") in ("refused", "icmp-error", "error", "closed")), None)
        if trouble is not None:
            detail = trouble.get("error") or trouble["event"]
        elif not said:
            detail = "the sender failed: " + ((stderr.strip().splitlines() or ["no output"])[-1])
        elif recv is None and probe.receiver is not None:
            detail = f"nothing arrived within {probe.timeout:g} s"
        elif probe.reply and reply is None:
            detail = f"no answer within {probe.timeout:g} s"
        else:
            detail = ""
        return ProbeResult(
            probe=probe, delivered=recv is not None, seen=recv.get("source") if recv else None,
            sport=int(sport), replied=(reply is not None) if probe.reply else None,
            reply_from=reply.get("source") if reply else None, detail=detail)

    # -- programs --------------------------------------------------------------------
    def run(self, host: str, command: Sequence[str], timeout: float) -> RunResult:
        try:
            done = self.lab.exec(host, list(command), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            return RunResult(-1, _text(err.stdout), _text(err.stderr) + f"\n(timed out after {timeout:g} s)")
        return RunResult(done.returncode, done.stdout, done.stderr)

    def spawn(self, host: str, command: Sequence[str], name: str) -> None:
        log = Path(self.lab.state.run_dir) / f"spawn-{name}-{os.getpid()}.log"
        with open(log, "wb") as sink:
            proc = self.lab.popen(host, list(command), stdout=sink, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        self._spawned[name] = (proc, log)

    def spawned_output(self, name: str) -> RunResult:
        proc, log = self._spawned[name]
        code = proc.poll()
        return RunResult(-1 if code is None else code, log.read_text(errors="replace"), "")

    def stop_spawned(self) -> dict[str, RunResult]:
        out = {}
        for name, (proc, log) in self._spawned.items():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: only what we started
                try:
                    proc.wait(2)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            out[name] = RunResult(proc.returncode, log.read_text(errors="replace"), "")
            log.unlink(missing_ok=True)
        self._spawned.clear()
        return out

    # -- gateways ----------------------------------------------------------------------
    def mappings(self, gateway: str) -> list[dict[str, Any]]:
        return self._client(gateway).mappings()

    def events(self, gateway: str, limit: int = 20) -> list[dict[str, Any]]:
        return self._client(gateway).events(limit=limit)

    def counters(self, gateway: str) -> dict[str, Any]:
        return self._client(gateway).counters()

    def set(self, gateway: str, assignments: Sequence[str]) -> None:
        self._client(gateway).set(list(assignments))

    def configure(self, gateway: str, behaviour: str, overrides: Optional[dict[str, Any]] = None) -> None:
        self._client(gateway).configure(behaviour, overrides or None)

    def advance(self, gateway: str, seconds: float) -> None:
        self._client(gateway).advance(seconds)

    def reboot(self, gateway: str) -> None:
        self._client(gateway).flush()

    def set_pool(self, gateway: str, pool: Sequence[str]) -> None:
        self._client(gateway).set_pool(list(pool))

    def map_port(self, host: str, request: Any) -> Any:
        """natlab's port mapping client (:mod:`natlab.realisers.netns.portmap_client`) in ``host``'s namespace."""
        from dataclasses import asdict

        from natlab.portmap.client import PortMapAnswer

        argv = [*python_module("natlab.realisers.netns.portmap_client"), json.dumps(asdict(request))]
        done = self.run(host, argv, request.timeout * 6 + _START_GRACE)
        said = json_lines(done.stdout)
        if not said:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return PortMapAnswer(False, "CLIENT_FAILED", detail=f"exit {done.returncode}: {tail}")
        return PortMapAnswer.from_dict(said[-1])

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        self.stop_spawned()
        for proc in self._held:  # their connections close with them
            _stop(proc)
            proc.communicate()
        self._held.clear()
        if self.owns:
            self.lab.down()


def _lines_until(proc: subprocess.Popen, event: str, timeout: float) -> list[dict[str, Any]]:
    """JSON lines from ``proc`` until one says ``event``, it exits, or ``timeout`` passes."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()  # read the pipe itself: a buffered reader could sit on the line we wait for
    text = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            break  # timed out, or the program exited
        text += chunk
        if any(e.get("event") == event for e in json_lines(text.decode(errors="replace"))):
            break
    return json_lines(text.decode(errors="replace"))


def _stop(proc: subprocess.Popen) -> None:
    """Stop a probe program started in its own session: SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(2)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass  # exited meanwhile


def _text(data: Any) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data)
