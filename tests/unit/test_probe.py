"""``python -m natlab.hostprogs.probe`` on loopback: each subcommand's JSON lines and exit code (no root)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

ALSO_LOOPBACK = "127.0.0.2"  # Linux answers for all of 127/8


def probe_argv(command: str, *args: object) -> list[str]:
    return [sys.executable, "-m", "natlab.hostprogs.probe", command, *map(str, args)]


def run(command: str, *args: object) -> tuple[int, list[dict]]:
    done = subprocess.run(probe_argv(command, *args), capture_output=True, text=True, timeout=20)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def start(command: str, *args: object) -> tuple[subprocess.Popen, dict]:
    """Start a long-running probe; it and its first line (listening, or a first reply)."""
    proc = subprocess.Popen(probe_argv(command, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, json.loads(proc.stdout.readline())


def finish(proc: subprocess.Popen) -> tuple[int, list[dict]]:
    out, _ = proc.communicate(timeout=20)
    return proc.returncode, [json.loads(line) for line in out.splitlines()]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def to_each(endpoints: list[str]) -> list[str]:
    return [arg for endpoint in endpoints for arg in ("--to", endpoint)]


# --- udp-reflect and udp-send -------------------------------------------------------------

def test_one_socket_asks_reflectors_on_several_endpoints_in_turn():
    reflector, listening = start("udp-reflect", "--bind", "127.0.0.1:0", "--bind", f"{ALSO_LOOPBACK}:0",
                                 "--count", 2)
    endpoints = listening["endpoints"]
    assert listening["event"] == "listening" and len(endpoints) == 2
    sport = free_port()
    code, replies = run("udp-send", "--sport", sport, *to_each(endpoints))
    assert code == 0
    assert [(r["event"], r["to"], r["source"]) for r in replies] == [("reply", e, e) for e in endpoints]
    assert [r["seen"] for r in replies] == [f"127.0.0.1:{sport}"] * 2  # one socket, one source
    code, reported = finish(reflector)
    assert code == 0  # --count 2 reached
    assert [(r["event"], r["source"], r["at"]) for r in reported] == [
        ("recv", f"127.0.0.1:{sport}", endpoints[0]), ("recv", f"127.0.0.1:{sport}", endpoints[1])]


def test_a_silent_reflector_reports_and_the_sender_times_out():
    reflector, listening = start("udp-reflect", "--port", 0, "--no-reply")
    to = f"127.0.0.1:{listening['port']}"
    code, events = run("udp-send", "--to", to, "--message", "knock", "--timeout", 0.3)
    assert (code, events) == (1, [{"event": "timeout", "to": to}])
    code, reported = finish(reflector)
    assert code == 0 and [(r["event"], r["data"]) for r in reported] == [("recv", "knock")]


def test_no_wait_only_sends_from_the_chosen_source_address():
    reflector, listening = start("udp-reflect", "--port", 0, "--no-reply")
    sport = free_port()
    code, events = run("udp-send", "--saddr", ALSO_LOOPBACK, "--sport", sport, "--no-wait",
                       "--to", f"127.0.0.1:{listening['port']}")
    assert (code, events) == (0, [{"event": "sent", "to": f"127.0.0.1:{listening['port']}", "sport": sport}])
    code, reported = finish(reflector)
    assert [r["source"] for r in reported] == [f"{ALSO_LOOPBACK}:{sport}"]


def test_hold_keeps_the_socket_open_and_reports_what_arrives():
    reflector, listening = start("udp-reflect", "--port", 0)
    sport = free_port()
    held, first = start("udp-send", "--sport", sport, "--to", f"127.0.0.1:{listening['port']}", "--hold", 1.0)
    assert first["event"] == "reply" and first["seen"] == f"127.0.0.1:{sport}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as knocker:
        knocker.bind(("127.0.0.1", 0))
        knocker.sendto(b"knock", ("127.0.0.1", sport))
        code, rest = finish(held)
        assert code == 0
        assert rest == [{"event": "recv", "source": f"127.0.0.1:{knocker.getsockname()[1]}", "data": "knock"},
                        {"event": "done"}]
    assert finish(reflector)[0] == 0


def test_a_reflector_gives_up_when_idle():
    code, events = run("udp-reflect", "--port", 0, "--timeout", 0.2)
    assert code == 1 and [e["event"] for e in events] == ["listening", "timeout"]


def test_a_reflector_needs_somewhere_to_listen():
    done = subprocess.run(probe_argv("udp-reflect"), capture_output=True, text=True, timeout=20)
    assert done.returncode == 2 and "--port or --bind" in done.stderr


def test_two_punchers_aimed_at_each_other_meet():
    a, b = free_port(), free_port()
    procs = [subprocess.Popen(probe_argv("udp-punch", "--sport", mine, "--peer", f"127.0.0.1:{theirs}"),
                              stdout=subprocess.PIPE, text=True)
             for mine, theirs in ((a, b), (b, a))]
    results = [finish(proc) for proc in procs]
    assert [(code, events[-1]["event"], events[-1]["source"]) for code, events in results] == [
        (0, "punched", f"127.0.0.1:{b}"), (0, "punched", f"127.0.0.1:{a}")]


# --- listen and send: the scenario probes (natlab/scenario/netns_driver.py reads these) ---

@pytest.mark.parametrize("proto, first", [("udp", "sent"), ("tcp", "connected")])
def test_listen_reports_the_source_and_send_gets_the_answer(proto, first):
    port, sport = free_port(), free_port()
    listener, listening = start("listen", "--proto", proto, "--port", port, "--token", "t-1", "--reply",
                                "--timeout", 5)
    assert listening == {"event": "listening", "proto": proto, "port": port}
    code, events = run("send", "--proto", proto, "--to", f"127.0.0.1:{port}", "--sport", sport,
                       "--token", "t-1", "--reply", "--timeout", 5)
    assert code == 0
    assert [e["event"] for e in events] == [first, "reply"] and events[0]["sport"] == sport
    assert events[1]["source"] == f"127.0.0.1:{port}"
    code, heard = finish(listener)
    assert code == 0 and heard[0]["source"] == f"127.0.0.1:{sport}" and "t-1" in heard[0]["data"]


def test_send_to_a_closed_udp_port_is_refused():
    code, events = run("send", "--to", f"127.0.0.1:{free_port()}", "--reply", "--timeout", 2)
    assert code == 1 and events[-1] == {"event": "refused"}


def test_listen_times_out_without_its_token():
    port = free_port()
    listener, _ = start("listen", "--port", port, "--timeout", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"not the token", ("127.0.0.1", port))
    assert finish(listener) == (1, [{"event": "timeout"}])
