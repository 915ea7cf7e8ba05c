"""``python -m natlab.hostprogs.probe``: GRE probes, held TCP connections, and which end of
a TCP probe closes first, on loopback (raw sockets: root)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from test_probe import finish, free_port, probe_argv, run, start

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="raw GRE sockets need root (CAP_NET_RAW)")


@needs_root
def test_gre_listener_reports_the_source_and_the_sender_gets_its_answer():
    listener, listening = start("listen", "--proto", "gre", "--token", "g-1", "--reply", "--timeout", 5)
    assert listening["event"] == "listening"
    code, events = run("send", "--proto", "gre", "--to", "127.0.0.1", "--token", "g-1", "--reply", "--timeout", 5)
    assert code == 0 and [e["event"] for e in events] == ["sent", "reply"]  # not its own packet looped back
    assert events[1]["source"] == "127.0.0.1"
    code, heard = finish(listener)
    assert code == 0 and heard == [{"event": "recv", "source": "127.0.0.1"}]


@needs_root
def test_gre_sender_that_waits_for_nothing_only_sends():
    code, events = run("send", "--proto", "gre", "--to", "127.0.0.1", "--token", "g-2")
    assert (code, events) == (0, [{"event": "sent", "sport": 0}])


def _until_held(proc: subprocess.Popen) -> list[str]:
    """The events a probe says up to ``held`` (or its failure)."""
    events: list[str] = []
    while not events or events[-1] not in ("held", "timeout", "refused", "error"):
        events.append(json.loads(proc.stdout.readline())["event"])
    return events


def _tcp_states(port: int) -> list[tuple[str, str, str]]:
    """(state, local, peer) of every TCP socket on ``port``, from ``ss``."""
    out = subprocess.run(["ss", "-Htan", f"( sport = :{port} or dport = :{port} )"], capture_output=True,
                         text=True, check=True).stdout
    return [tuple(line.split()[i] for i in (0, 3, 4)) for line in out.splitlines()]


def test_keep_open_holds_the_connection_on_both_ends_until_stopped():
    port, sport = free_port(), free_port()
    listener, listening = start("listen", "--proto", "tcp", "--port", port, "--token", "k-1", "--reply",
                                "--keep-open", "--timeout", 5)
    sender = subprocess.Popen(probe_argv("send", "--proto", "tcp", "--to", f"127.0.0.1:{port}", "--sport", sport,
                                         "--token", "k-1", "--reply", "--keep-open", "--timeout", 5),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listening["event"] == "listening"
        assert _until_held(sender) == ["connected", "reply", "held"]
        assert _until_held(listener) == ["recv", "held"]
        time.sleep(0.2)
        states = _tcp_states(port)
        assert ("ESTAB", f"127.0.0.1:{sport}", f"127.0.0.1:{port}") in states
        assert ("ESTAB", f"127.0.0.1:{port}", f"127.0.0.1:{sport}") in states
        assert not any(s[0] == "LISTEN" for s in states)  # the port is free to listen on again
    finally:
        for proc in (sender, listener):
            proc.terminate()
            proc.communicate(timeout=5)


def test_a_tcp_sender_waiting_for_an_answer_lets_the_listener_close_first():
    """So the listener's end keeps TIME_WAIT and the sender may reuse its 5-tuple at once."""
    port, sport = free_port(), free_port()
    listener, _ = start("listen", "--proto", "tcp", "--port", port, "--token", "c-1", "--reply", "--timeout", 5)
    code, _ = run("send", "--proto", "tcp", "--to", f"127.0.0.1:{port}", "--sport", sport, "--token", "c-1",
                  "--reply", "--timeout", 5)
    finish(listener)
    assert code == 0
    waiting = [s for s in _tcp_states(port) if s[0] == "TIME-WAIT"]
    assert waiting == [("TIME-WAIT", f"127.0.0.1:{port}", f"127.0.0.1:{sport}")]
