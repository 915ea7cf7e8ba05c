"""A pcap of both sides of a gateway: tcpdump ``-i any`` inside its namespace.

``-i any`` writes Linux cooked captures (LINUX_SLL2), which name the interface
of every packet, so one file shows each translated packet twice: as it arrived
on one side and as it left on the other. Wireshark and tshark read it as is.

::

    with Capture("natlab-lab-nat-a", "nat-a.pcap"):
        ...  # traffic
    # or: packets = capture("natlab-lab-nat-a", "nat-a.pcap", duration=10)
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

from natlab.errors import BackendUnavailable, LabError


class Capture:
    """tcpdump in ``netns`` writing to ``output``; ``start()`` returns once it listens."""

    def __init__(self, netns: str, output: str | Path, *, interface: str = "any",
                 snaplen: int = 0, bpf: str = "") -> None:
        self.netns = netns
        self.bpf = bpf
        """A tcpdump filter expression (empty: every packet)."""
        self.output = Path(output)
        self.interface = interface
        self.snaplen = snaplen
        self._proc: Optional[subprocess.Popen] = None
        self.packets: Optional[int] = None

    def argv(self) -> list[str]:
        # -Z root: tcpdump would otherwise drop to its own user, who may not write here.
        return ["ip", "netns", "exec", self.netns, "tcpdump", "-i", self.interface, "-n", "-U", "--immediate-mode",
                "-s", str(self.snaplen), "-Z", "root", "-w", str(self.output.resolve()),
                *([self.bpf] if self.bpf else [])]

    def start(self, timeout: float = 10.0) -> "Capture":
        if shutil.which("tcpdump") is None:
            raise BackendUnavailable("tcpdump is not installed", hint="apt-get install tcpdump")
        self._proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self._proc.stderr is not None
        deadline = time.monotonic() + timeout
        said = b""
        while b"listening on" not in said:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._proc.poll() is not None:
                self._proc.kill()
                self._proc.wait()
                raise LabError(f"tcpdump did not start in {self.netns}", got=said.decode(errors="replace").strip())
            ready, _, _ = select.select([self._proc.stderr], [], [], remaining)
            if ready:  # os.read, not readline: a buffered read could swallow the line select waits for
                said += os.read(self._proc.stderr.fileno(), 4096)
        return self

    def stop(self) -> int:
        """Stop tcpdump (it flushes the file); returns the number of packets captured."""
        if self._proc is None:
            return self.packets or 0
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        try:
            _, err = self._proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            _, err = self._proc.communicate()
        self._proc = None
        found = re.search(rb"(\d+) packets? captured", err or b"")
        self.packets = int(found.group(1)) if found else 0
        return self.packets

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def capture(netns: str, output: str | Path, *, duration: Optional[float] = None, bpf: str = "") -> int:
    """Capture until ``duration`` seconds pass or Ctrl-C; returns packets captured."""
    cap = Capture(netns, output, bpf=bpf).start()
    try:
        if duration is None:
            while True:
                time.sleep(3600)
        time.sleep(duration)
    except KeyboardInterrupt:
        pass
    finally:
        packets = cap.stop()
    return packets
