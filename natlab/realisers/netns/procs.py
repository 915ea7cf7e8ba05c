"""Processes a lab starts inside its namespaces, and stopping them safely.

A process is identified by its PID *and* its start time (field 22 of
``/proc/<pid>/stat``), recorded when it is started: after a reboot or PID
reuse the pair no longer matches and the process is left alone. Gateways are
further checked by their command line naming their spec file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

STOP_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL."""


def python_module(module: str, *args: str) -> list[str]:
    """``python -P -m module args...`` with this interpreter.

    ``-P`` keeps the working directory off ``sys.path``: a folder named ``natlab``
    where the user happens to stand (a clone in ``~``) cannot shadow the install.
    """
    return [sys.executable, "-P", "-m", module, *args]


def start(ns: str, argv: Sequence[str], log_path: Path,
          env: Optional[dict[str, str]] = None) -> subprocess.Popen:
    """Start ``argv`` in namespace ``ns`` in a new session, output to ``log_path``.

    ``ip netns exec`` execs the command, so the PID returned is the command's.
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)


def start_time(pid: int) -> Optional[int]:
    """Start time of ``pid`` in clock ticks since boot; None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(pid: Optional[int], started: Optional[int], needle: Optional[str] = None) -> bool:
    """Alive and the very process recorded (same start time, ``needle`` in cmdline)."""
    if not pid or started is None or start_time(pid) != started:
        return False
    return needle is None or any(needle in part for part in cmdline(pid))


def stop(pids: Sequence[int], grace: float = STOP_GRACE) -> None:
    """SIGTERM each process (and its process group if it leads one), then SIGKILL."""
    started = {pid: start_time(pid) for pid in pids}
    alive = [pid for pid, t in started.items() if t is not None]
    for pid in alive:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        _reap(alive)
        alive = [pid for pid in alive if start_time(pid) == started[pid]]
    for pid in alive:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [pid for pid in alive if start_time(pid) == started[pid]]
    _reap(list(started))


def _signal(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already gone


def _reap(pids: Sequence[int]) -> None:
    """Collect our own children that exited (a lab started by this process)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child: init reaps it


def log_tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"
