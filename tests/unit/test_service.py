"""The gateway's state and control protocol, driven without root: fake engine, real unix socket."""

from __future__ import annotations

import json
import selectors
import socket
import threading

import pytest

from natlab.engine.types import Side
from natlab.engine.verdicts import Drop, DropReason, Emit, Event, EventKind, Forward, Hairpin, Tick
from natlab.errors import ControlError
from natlab.gateway.client import GatewayClient
from natlab.gateway.control import ControlServer
from natlab.gateway.outcome import Action
from natlab.gateway.passthrough import PassthroughEngine
from natlab.gateway.service import Gateway
from gatewaykit import Sent, make_spec
from natlab.packet import build


def _udp(src="192.168.77.2", dst="203.0.113.2", sport=5000, dport=7000, payload=b"hi") -> bytes:
    return build.udp(src, sport, dst, dport, payload)


class ScriptedEngine(PassthroughEngine):
    """Answers each packet with the next verdict from ``script``."""

    def __init__(self, script):
        super().__init__({}, ("203.0.113.10",), None)
        self.script = list(script)
        self.deadline = None
        self.expired_at = []

    def process(self, data, side, now):
        verdict = self.script.pop(0)
        if isinstance(verdict, Exception):
            raise verdict
        return verdict

    def next_deadline(self):
        return self.deadline

    def expire(self, now):
        self.expired_at.append(now)
        ev = Event(EventKind.MAPPING_EXPIRED, now, protocol="udp")
        return Tick((ev,), ())


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def make_gateway(tmp_path, engine, sent=None, clock=None):
    return Gateway(make_spec(tmp_path), engine, {}, sender=sent or Sent(), clock=clock or Clock())


@pytest.mark.parametrize(
    "verdict, action, sends",
    [
        (Forward(b"rewritten" + bytes(20)), Action.ACCEPT, 0),
        (Hairpin(b"hairpinned" + bytes(20)), Action.DROP, 1),
        (Drop(DropReason.FILTERED), Action.DROP, 0),
        (Forward(b"x" * 20, emits=(Emit(Side.OUTSIDE, b"e" * 20),)), Action.ACCEPT, 1),
    ],
    ids=["forward-accepts-new-bytes", "hairpin-drops-and-sends", "drop-drops", "emits-are-sent"],
)
def test_verdicts_become_queue_actions(tmp_path, verdict, action, sends):
    sent = Sent()
    gateway = make_gateway(tmp_path, ScriptedEngine([verdict]), sent)
    outcome = gateway.on_packet(_udp(), Side.INSIDE)
    assert outcome.action is action
    if isinstance(verdict, Forward):
        assert outcome.data == verdict.data
    assert len(sent.packets) == sends


def test_every_drop_is_an_event_with_reason_and_packet(tmp_path):
    gateway = make_gateway(tmp_path, ScriptedEngine([Drop(DropReason.NO_MAPPING)]))
    gateway.on_packet(_udp(src="198.51.100.7", dst="203.0.113.10"), Side.OUTSIDE)
    (event,) = gateway.events
    assert event["kind"] == "dropped" and event["reason"] == "no-mapping"
    assert event["side"] == "outside" and "198.51.100.7" in event["packet"]


def test_engine_bug_drops_counts_and_keeps_going(tmp_path, caplog):
    boom = RuntimeError("boom")
    engine = ScriptedEngine([boom, RuntimeError("boom"), Forward(_udp())])
    gateway = make_gateway(tmp_path, engine)
    assert gateway.on_packet(_udp(), Side.INSIDE).action is Action.DROP
    assert gateway.on_packet(_udp(), Side.INSIDE).action is Action.DROP
    assert gateway.on_packet(_udp(), Side.INSIDE).action is Action.ACCEPT
    assert gateway.counters()["gateway"]["engine_errors"] == 2
    assert sum("engine error" in r.message for r in caplog.records) == 1  # logged once


def test_truncated_packet_is_dropped_not_rewritten(tmp_path):
    gateway = make_gateway(tmp_path, ScriptedEngine([]))
    assert gateway.on_packet(_udp(payload=b"x" * 100)[:60], Side.INSIDE).action is Action.DROP
    assert gateway.counters()["gateway"]["truncated"] == 1


def test_advance_moves_the_clock_and_expires_at_once(tmp_path):
    clock = Clock()
    engine = ScriptedEngine([])
    gateway = make_gateway(tmp_path, engine, clock=clock)
    response = gateway.handle({"op": "advance", "seconds": 400})
    assert response["ok"] and response["clock_offset"] == 400
    assert engine.expired_at == [1400.0]
    assert gateway.events[-1]["kind"] == "mapping-expired"


def test_timer_expires_only_when_the_deadline_passed(tmp_path):
    clock = Clock()
    engine = ScriptedEngine([])
    gateway = make_gateway(tmp_path, engine, clock=clock)
    engine.deadline = 1010.0
    assert gateway.timeout() == 10.0
    gateway.on_timer()
    assert engine.expired_at == []
    clock.t = 1010.0
    gateway.on_timer()
    assert engine.expired_at == [1010.0]


@pytest.mark.parametrize(
    "request_, error",
    [
        ({"op": "nope"}, "unknown op"),
        ({"op": "advance", "seconds": -1}, "seconds"),
        ({"op": "advance", "seconds": "ten"}, "seconds"),
        ({"op": "set-pool", "pool": ["not-an-ip"]}, "not an IPv4 address"),
        ({"op": "set-pool", "pool": []}, "non-empty"),
        ({"op": "set", "assignments": "timeouts.udp=30"}, "list"),
    ],
)
def test_bad_requests_get_ok_false_with_a_reason(tmp_path, request_, error):
    response = make_gateway(tmp_path, ScriptedEngine([])).handle(request_)
    assert response["ok"] is False and error in response["error"]


def test_set_pool_adds_before_and_removes_after(tmp_path):
    calls = []

    class Hooks:
        def add_addresses(self, a): calls.append(("add", list(a)))
        def remove_addresses(self, a): calls.append(("remove", list(a)))
        def set_rules_pool(self, p): calls.append(("rules", list(p)))

    gateway = Gateway(make_spec(tmp_path), PassthroughEngine({}, (), None), {}, sender=Sent(),
                      pool_hooks=Hooks())
    response = gateway.handle({"op": "set-pool", "pool": ["203.0.113.11"]})
    assert response == {"ok": True, "pool": ["203.0.113.11"]}
    assert calls == [("add", ["203.0.113.11"]), ("rules", ["203.0.113.11"]), ("remove", ["203.0.113.10"])]


# --- the control socket, served in a thread ----------------------------------


@pytest.fixture
def served(tmp_path):
    """A gateway with a scripted engine behind a real control socket."""
    engine = ScriptedEngine([Drop(DropReason.FILTERED)] * 10)
    gateway = make_gateway(tmp_path, engine)
    selector = selectors.DefaultSelector()
    path = tmp_path / "gw-nat-a.sock"
    server = ControlServer(path, gateway.handle, selector).open()
    gateway.publish = server.broadcast
    stop = threading.Event()
    lock = threading.Lock()

    def loop():
        while not stop.is_set():
            for key, mask in selector.select(0.05):
                with lock:
                    key.data(mask)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield gateway, GatewayClient(path, name="nat-a", timeout=5), server, lock
    finally:
        stop.set()
        thread.join()
        server.close()


def test_control_socket_is_root_only(served, tmp_path):
    assert (tmp_path / "gw-nat-a.sock").stat().st_mode & 0o777 == 0o600


def test_client_ops_round_trip(served):
    gateway, client, _server, _lock = served
    assert client.ping()
    status = client.status()
    assert status["name"] == "nat-a" and status["pool"] == ["203.0.113.10"]
    assert client.mappings() == []
    assert "gateway" in client.counters()
    assert client.advance(5)["clock_offset"] == 5
    assert client.flush()["ok"]
    assert client.set_pool(["203.0.113.12"]) == ["203.0.113.12"]


def test_refused_request_is_a_control_error(served):
    _gateway, client, _server, _lock = served
    with pytest.raises(ControlError, match="seconds"):
        client.advance(-3)


def test_several_requests_on_one_connection(served, tmp_path):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(tmp_path / "gw-nat-a.sock"))
        sock.sendall(b'{"op":"ping"}\n{"op":"ping"}\nnot json\n')
        stream = sock.makefile("rb")
        answers = [json.loads(stream.readline()) for _ in range(3)]
    assert [a["ok"] for a in answers] == [True, True, False]


def test_follow_streams_events_live(served):
    gateway, client, _server, lock = served
    stream = client.follow_events()
    first = threading.Event()
    got = []

    def reader():
        for event in stream:
            got.append(event)
            first.set()
            break

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    import time

    deadline = time.monotonic() + 5
    while not first.is_set() and time.monotonic() < deadline:
        with lock:
            gateway.on_packet(_udp(), Side.OUTSIDE)
        time.sleep(0.05)
    thread.join(5)
    assert got and got[0]["kind"] in ("dropped", "filtered")


def test_missing_socket_says_gateway_not_running(tmp_path):
    client = GatewayClient(tmp_path / "gw-nat-b.sock")
    with pytest.raises(ControlError, match="gateway nat-b is not running.*natlab status"):
        client.status()


def test_advance_reports_the_events_it_caused_not_the_whole_history(tmp_path):
    gateway = make_gateway(tmp_path, ScriptedEngine([]), clock=Clock())
    assert gateway.handle({"op": "advance", "seconds": 10})["events"] == 1
    assert gateway.handle({"op": "advance", "seconds": 10})["events"] == 1
    assert len(gateway.events) == 2
