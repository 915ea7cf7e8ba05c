"""Measuring one path of ``natlab bench nat``: UDP pkt/s, TCP Mbit/s, new mappings/s.

:class:`Meter` runs the measuring tools between the lab's inside host ``alice`` and
outside host ``server`` while a path is installed (iperf3 when installed, else the
Python senders and receivers of :mod:`~natlab.bench.lab_tools`), and turns one path
into one :class:`PathFigures` row: a figure that fails becomes a note, never an
exception. Every wait is bounded.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from natlab.bench.lab_paths import TOOLS
from natlab.errors import LabError
from natlab.realisers.netns.procs import python_module

SERVER = "203.0.113.100"
PORT = 5201
UDP_PAYLOAD = 64
TOOL_SLACK = 15.0
"""Seconds a measuring tool may run beyond its nominal duration before it is stopped."""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PathFigures:
    path: str
    udp_pps: Optional[float] = None
    """64-byte datagrams received per second by the outside host."""
    udp_sent_pps: Optional[float] = None
    """Datagrams the inside host managed to send per second (the offered load)."""
    tcp_mbps: Optional[float] = None
    new_mappings_ps: Optional[float] = None
    """Datagrams from a fresh source port each (a new mapping each) received per second."""
    note: str = ""


class Meter:
    def __init__(self, lab, seconds: float, use_iperf3: bool, progress: Progress) -> None:
        self.lab = lab
        self.seconds = seconds
        self.use_iperf3 = use_iperf3
        self.progress = progress

    def measure(self, path: str, install: Callable, mappings: bool = False) -> PathFigures:
        try:
            with install():
                udp, udp_note = self._guarded(self.udp_pps)
                tcp, tcp_note = self._guarded(self.tcp_mbps)
                new, new_note = self._guarded(self.new_mappings_ps) if mappings else (None, "")
        except LabError as err:
            return PathFigures(path, note=err.message)
        received, sent = udp if udp is not None else (None, None)
        return PathFigures(path, received, sent, tcp, new,
                           "; ".join(n for n in (udp_note, tcp_note, new_note) if n))

    def new_mappings_ps(self) -> float:
        """Datagrams from a fresh source port each, received per second on the server."""
        out, _blast = self._sink_and_sender("udp-sink", "mappings-blast", PORT + 1)
        if not out.strip():
            raise LabError("the new-mappings receiver reported nothing")
        received = json.loads(out)
        if received["count"] < 2:
            raise LabError("no new mapping got through", got=received["count"])
        return received["count"] / received["seconds"]

    def _guarded(self, fn: Callable[[], Any]) -> tuple[Any, str]:
        try:
            return fn(), ""
        except (LabError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as err:
            return None, getattr(err, "message", str(err))[:120]

    def udp_pps(self) -> tuple[float, float]:
        """(received, sent) datagrams per second."""
        if self.use_iperf3:
            end = self._iperf3(["-u", "-b", "0", "-l", str(UDP_PAYLOAD)])["end"]
            summary = end["sum"]  # as the server saw it: packets sent, lost_packets
            sent = end.get("sum_sent", summary)
            seconds = sent.get("seconds") or self.seconds
            return (summary["packets"] - summary["lost_packets"]) / seconds, sent["packets"] / seconds
        return self._python_pair("udp")

    def tcp_mbps(self) -> float:
        if self.use_iperf3:
            out = self._iperf3([])
            return out["end"]["sum_received"]["bits_per_second"] / 1e6
        return self._python_pair("tcp")[0] * 8 / 1e6

    def _iperf3(self, extra: list[str]) -> dict:
        """One iperf3 client run against a fresh one-shot server (``-1``) on the outside host."""
        from natlab.realisers.netns import procs
        log = Path(self.lab.state.run_dir) / "iperf3-server.log"
        server = procs.start(self.lab.netns("server"), ["iperf3", "-s", "-1", "-B", SERVER, "-p", str(PORT)], log)
        try:
            time.sleep(0.3)
            argv = ["iperf3", "-c", SERVER, "-p", str(PORT), "-t", f"{self.seconds:g}", "-J",
                    "--connect-timeout", "3000", *extra]
            done = self.lab.exec("alice", argv, capture_output=True, text=True,
                                 timeout=self.seconds + TOOL_SLACK)
        finally:
            procs.stop([server.pid])
        out = json.loads(done.stdout or "{}")
        if "error" in out:
            raise LabError(f"iperf3: {out['error']}")
        return out

    def _sink_and_sender(self, sink_tool: str, sender_tool: str, port: int) -> tuple[str, Any]:
        """The receiver ``sink_tool`` on the server, then ``sender_tool`` on alice, both for
        the bench's seconds: (what the receiver printed, the sender's completed process)."""
        py = python_module(TOOLS)
        sink = self.lab.popen("server", [*py, sink_tool, SERVER, str(port), f"{self.seconds:g}"],
                              stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            blast = self.lab.exec("alice", [*py, sender_tool, SERVER, str(port), f"{self.seconds:g}"],
                                  capture_output=True, text=True, timeout=self.seconds + TOOL_SLACK)
            out, _ = sink.communicate(timeout=self.seconds + TOOL_SLACK)
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait(timeout=5)
        return out, blast

    def _python_pair(self, proto: str) -> tuple[float, float]:
        """Receiver on the server, sender on alice: (received, sent) per second (datagrams or bytes)."""
        out, blast = self._sink_and_sender(f"{proto}-sink", f"{proto}-blast", PORT)
        if not out.strip() or not blast.stdout.strip():
            raise LabError(f"{proto} sender or receiver reported nothing", got=blast.stderr.strip()[-200:])
        received, sent = json.loads(out), json.loads(blast.stdout)
        return received["count"] / received["seconds"], sent["count"] / sent["seconds"]
