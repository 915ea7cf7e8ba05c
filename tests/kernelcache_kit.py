"""What the kernel-cache kill -9 tests share (netns and Docker): a cached flow, the gateway
killed under it, and the check that the namespace failed closed within one quantum.

Imported by module name (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labkit import wait_for

FLOWKIT = Path(__file__).parent / "netns" / "kernelcache" / "flowkit.py"
_LINE = re.compile(r"^(\d+\.\d+) .*?\bIP (\d+\.\d+\.\d+\.\d+)\.(\d+) > ")


def kill_under_a_cached_flow(lab: Any, pid: int, server: str) -> tuple[list[tuple[str, str, str]], float]:
    """Alice sends UDP to ``server``:7000 for 5 s; after 2 s (well cached) the gateway ``pid``
    gets SIGKILL. Returns what tcpdump on the server saw (time, source, port) and the kill time."""
    capture = lab.popen("server", ["tcpdump", "-n", "-tt", "-l", "-i", "any", "udp", "port", "7000"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: b"listening" in os.read(capture.stderr.fileno(), 4096), timeout=10)
        sender = lab.popen("alice", [sys.executable, str(FLOWKIT), "udp-raw", f"{server}:7000", "5000", "500", "0.01"],
                           stdout=subprocess.PIPE, text=True)
        time.sleep(2.0)  # well cached by now
        os.kill(pid, signal.SIGKILL)
        killed = time.time()
        sender.communicate(timeout=30)
        time.sleep(0.5)
    finally:
        capture.send_signal(signal.SIGINT)
        out, _ = capture.communicate(timeout=10)
    return [m.groups() for line in out.splitlines() if (m := _LINE.match(line))], killed


def assert_failed_closed(seen: list[tuple[str, str, str]], killed: float, pool: str, quantum: float) -> None:
    """Traffic crossed, never with an inside address, and stopped within one quantum of the kill."""
    assert len(seen) > 100
    assert {src for _t, src, _p in seen} == {pool}  # never an inside address
    after = [float(t) for t, _s, _p in seen if float(t) > killed]
    assert not after or max(after) < killed + quantum + 0.2  # closed within one quantum
