"""Fail-closed pieces without root: closed rules, request depth, client limits, the watchdog."""

from __future__ import annotations

import json
import selectors
import socket
import struct

import pytest

from natlab.gateway.control import MAX_DEPTH, ControlServer, nesting_depth
from natlab.datapaths.nfqueue.queues import config_message, parse_queue_stats
from natlab.datapaths.nfqueue.rules import closed_rules, fwd_rules, pre_rules
from natlab.gateway.inputs import allowed_preset
from natlab.datapaths.nfqueue.watchdog import QueueWatchdog


def test_closed_rules_drop_what_the_queue_rules_match_and_keep_no_early_return():
    pre = pre_rules("lab", outside_iface="out0", inside_ifaces=("in0",), pool=("203.0.113.10",),
                    queue_in=0, mark=0x4E4C)
    fwd = fwd_rules("lab", outside_iface="out0", inside_ifaces=("in0",), queue_out=1, mark=0x4E4C)
    for rules in (pre, fwd):
        closed = closed_rules(rules)
        assert all(rule[-2:] == ["-j", "DROP"] for rule in closed)
        assert [r[:r.index("-j")] for r in closed] == [r[:r.index("-j")] for r in rules if "NFQUEUE" in r]
        assert not any("--mark" in rule for rule in closed)


@pytest.mark.parametrize("line, deep", [
    (b'{"op": "ping"}', False),
    (b'{"op": "ping", "s": "' + b"[" * 1000 + b'"}', False),
    (b'{"op": "ping", "s": "\\"' + b"[" * 1000 + b'"}', False),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), True),
    (b"[" * 100_000, True),
], ids=["plain", "brackets-in-a-string", "escaped-quote-then-brackets", "one-too-deep", "unclosed"])
def test_nesting_depth_counts_brackets_outside_strings(line, deep):
    assert (nesting_depth(line) > MAX_DEPTH) is deep


def test_config_message_asks_the_kernel_for_whole_packets():
    message = config_message(7, 0xFFFF)
    length, kind, flags = struct.unpack("=IHH", message[:8])
    assert length == len(message) and kind == 0x0302 and flags == 1
    assert struct.unpack(">H", message[18:20]) == (7,)  # res_id: the queue, big-endian
    assert message[24:29] == struct.pack(">IB", 0xFFFF, 2)


def test_queue_stats_are_read_per_queue():
    text = "    0  12345     3 2 65531     7     1   900  1\n    1  12345     0 2 65531     0     0  40  1\n"
    stats = parse_queue_stats(text)
    assert stats[0]["queue_total"] == 3 and stats[0]["queue_dropped"] == 7 and stats[0]["user_dropped"] == 1
    assert stats[1]["id_sequence"] == 40


def test_the_watchdog_tells_busy_from_stalled():
    dog = QueueWatchdog(interval=1.0, stall_checks=3)
    assert dog.check(0, {"in": {"queue_total": 0}}, received=0) == "ok"
    assert dog.check(1, {"in": {"queue_total": 50}}, received=100) == "busy"
    states = [dog.check(t, {"in": {"queue_total": 50}}, received=100) for t in (2, 3, 4)]
    assert states == ["busy", "busy", "stalled"] and dog.stalls == 1
    assert dog.check(5, {"in": {"queue_total": 0}}, received=100) == "ok"


@pytest.mark.parametrize("behaviour, ok", [
    ("full-cone", True),
    ("../../../etc/passwd", False),
    ("/etc/passwd", False),
    ("/lab/presets/mine.yaml", True),
    ("/lab/presets/../../etc/x.yaml", False),
    ("/lab/presets/notes.txt", False),
    ("mine.yaml", False),
])
def test_configure_takes_names_and_files_under_the_labs_folders(behaviour, ok, tmp_path):
    root = tmp_path / "lab" / "presets"
    root.mkdir(parents=True)
    behaviour = behaviour.replace("/lab/", f"{tmp_path}/lab/")
    if ok:
        allowed_preset(behaviour, [str(root)])
    else:
        with pytest.raises(ValueError):
            allowed_preset(behaviour, [str(root)])


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _serve(tmp_path, **limits):
    selector = selectors.DefaultSelector()
    clock = _Clock()
    server = ControlServer(tmp_path / "c.sock", lambda r: {"ok": True, "op": r["op"]}, selector,
                           clock=clock, **limits).open()

    def pump(rounds=5):
        for _ in range(rounds):
            for key, mask in selector.select(0.05):
                key.data(mask)
            server.on_timer(clock.now)
    return server, clock, pump


def test_one_client_too_many_closes_the_one_idle_longest(tmp_path):
    server, clock, pump = _serve(tmp_path, max_clients=3)
    socks = []
    for i in range(4):
        clock.now = float(i)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(server.path))
        socks.append(sock)
        pump()
    assert server.stats()["control_clients"] == 3 and server.stats()["control_evicted"] == 1
    socks[0].settimeout(1)
    assert socks[0].recv(10) == b""  # the oldest was closed
    socks[3].sendall(b'{"op": "ping"}\n')
    pump()
    socks[3].settimeout(1)
    assert json.loads(socks[3].recv(100))["op"] == "ping"
    server.close()


def test_a_client_that_sends_nothing_is_closed_after_the_idle_timeout(tmp_path):
    server, clock, pump = _serve(tmp_path, idle_timeout=30)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(server.path))
    pump()
    assert server.next_deadline() == 30
    clock.now = 31
    pump()
    assert server.stats() == {**server.stats(), "control_clients": 0, "control_idle_closed": 1}
    server.close()
