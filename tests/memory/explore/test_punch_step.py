"""The ``punch`` scenario step, the peer's ``--trace`` seam, and how an attempt becomes diagram rows.

- In memory the step runs the peer's own core on the twin; for every ordered pair
  of the classic presets it gets the outcome RFC 4787 predicts (as the traversal
  matrix states it).
- A step expecting the other outcome fails, saying what each peer heard; bad
  steps are located errors, all at once.
- ``python -m natlab.hostprogs.peer --trace`` (real sockets on 127.0.0.1) says each
  datagram sent and received, numbered; without it the output is as before.
- :mod:`natlab.explore.punchwalk` charges a gateway's drop to the one datagram it
  belongs to, matches receipts by number, marks what opened a NAT, folds repeats.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from natlab.errors import ConfigError
from natlab.explore import punchwalk
from natlab.explore.eventwalk import Network, Seen
from natlab.matrix.memory import CLASSIC, EXPECTED_CLASSIC
from natlab.realisers.memory.driver import MemoryDriver
from natlab.scenario import load, run_scenario
from natlab.scenario.punch import Plan, run_punch

REPO = Path(__file__).resolve().parents[3]
TWO_HOMES = REPO / "natlab" / "data" / "topologies" / "two-homes.yaml"


@pytest.mark.parametrize("a,b", list(itertools.product(CLASSIC, repeat=2)))
def test_the_punch_step_in_memory_gets_what_rfc_4787_predicts(a: str, b: str) -> None:
    driver = MemoryDriver(TWO_HOMES)
    driver.configure("nat-a", a)
    driver.configure("nat-b", b)
    done = run_punch(driver, Plan(("alice", "bob"), "server"), "t")
    assert done.how == "in-process"
    assert done.ok is EXPECTED_CLASSIC[(a, b)]
    assert {n: s.report["event"] for n, s in done.sides.items()} == dict.fromkeys(
        ("alice", "bob"), "punched" if done.ok else "failed")


def scenario(tmp_path: Path, steps: str) -> Path:
    path = tmp_path / "punch.yaml"
    path.write_text(f"topology: {TWO_HOMES}\nsteps:\n{steps}")
    return path


def test_a_punch_step_expecting_the_other_outcome_fails_saying_what_each_peer_heard(tmp_path: Path) -> None:
    path = scenario(tmp_path, """
  - configure: {gateway: nat-a, behaviour: full-cone}
  - punch: {peers: [alice, bob], rendezvous: server}
  - configure: {gateway: nat-a, behaviour: symmetric}
  - punch: {peers: [alice, bob], rendezvous: server, timeout: 1}
""")
    report = run_scenario(load(path), "memory")
    assert report.status == "failed"
    bad = report.failed_step
    assert bad is not None and bad.index == 3 and bad.expected == {"punched": True} and bad.seen == {"punched": False}
    assert "alice heard the other: False" in bad.message and "bob heard the other: False" in bad.message
    assert report.steps[1].status == "passed" and "punched" in report.steps[1].summary


BAD_STEPS = [
    ("- punch: {peers: [alice, bobb], rendezvous: server}", "steps[0].punch.peers[1]", "did you mean 'bob'"),
    ("- punch: {peers: [alice, bob], rendezvous: alice}", "steps[0].punch.rendezvous", "runs on a third host"),
    ("- punch: {peers: [alice, alice], rendezvous: server}", "steps[0].punch.peers", "cannot punch to itself"),
    ("- punch: {peers: [alice], rendezvous: server}", "steps[0].punch.peers", "at least 2"),
    ("- punch: {peers: [alice, bob], rendezvous: server, timeout: 1, interval: 2}", "steps[0].punch.interval",
     "shorter than timeout"),
    ("- punch: {peers: [alice, bob], rendezvous: server, timout: 3}", "steps[0].punch.timout", "did you mean 'timeout'"),
    ("- punch: {peers: [alice, bob], rendezvous: server}\n    expect: {delivered: true}", "steps[0].expect.delivered",
     "known keys: punched"),
    ("- punch: {peers: [alice, bob], rendezvous: server, port: 0}", "steps[0].punch.port", "greater than or equal"),
]


@pytest.mark.parametrize("step,key,message", BAD_STEPS, ids=[k + ":" + m for _, k, m in BAD_STEPS])
def test_a_bad_punch_step_is_a_located_error(tmp_path: Path, step: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(scenario(tmp_path, "  " + step + "\n"))
    errors = getattr(caught.value, "errors", [caught.value])
    line = 4 if key.startswith("steps[0].expect") else 3
    assert any(e.key == key and message in str(e) and e.line == line for e in errors), [str(e) for e in errors]


def test_every_bad_punch_step_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(scenario(tmp_path, "  - punch: {peers: [alice, carol], rendezvous: alice}\n"
                                "  - punch: {peers: [bob, bob], rendezvous: server}\n"))
    keys = sorted(e.key for e in caught.value.errors)
    assert keys == ["steps[0].punch.peers[1]", "steps[0].punch.rendezvous", "steps[1].punch.peers"]


# --- the peer's --trace seam (real sockets on 127.0.0.1) ---------------------------------------

def free_udp_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_peers(trace: bool) -> dict[str, list[dict[str, Any]]]:
    """The rendezvous and two peers on 127.0.0.1, as the matrix starts them; what each printed."""
    rv, pa, pb = free_udp_ports(3)
    extra = ["--trace"] if trace else []
    peer = [sys.executable, "-m", "natlab.hostprogs.peer"]
    started = [subprocess.Popen([*peer, "rendezvous", "--port", str(rv), *extra], stdout=subprocess.PIPE, text=True)]
    try:
        assert '"listening"' in started[0].stdout.readline()
        for name, port in (("alice", pa), ("bob", pb)):
            started.append(subprocess.Popen([*peer, "punch", "--server", f"127.0.0.1:{rv}", "--session", "s",
                                             "--name", name, "--sport", str(port), "--timeout", "5", *extra],
                                            stdout=subprocess.PIPE, text=True))
        out = {name: [json.loads(ln) for ln in p.communicate(timeout=30)[0].splitlines()]
               for name, p in zip(("alice", "bob"), started[1:])}
        started[0].terminate()  # the rendezvous runs until told; the peers are done with it
        out["rendezvous"] = [json.loads(ln) for ln in [*started[0].communicate(timeout=10)[0].splitlines()]]
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def test_the_peer_traces_every_datagram_numbered_only_when_asked() -> None:
    traced = run_peers(True)
    assert traced["alice"][-1]["event"] == traced["bob"][-1]["event"] == "punched"
    for name, lines in traced.items():
        sent = [ln for ln in lines if ln["event"] == "sent"]
        assert [ln["message"]["n"] for ln in sent] == list(range(1, len(sent) + 1)), name
        assert all(ln["ts"] > 0 and ln["at"] >= 0 for ln in sent)
    numbers = {name: {ln["message"]["n"] for ln in lines if ln["event"] == "sent"} for name, lines in traced.items()}
    for name, lines in traced.items():
        for ln in (ln for ln in lines if ln["event"] == "received"):
            assert ln["message"]["n"] in numbers[punchwalk.sender_of(ln["message"])], ln
    plain = run_peers(False)
    assert {ln["event"] for lines in plain.values() for ln in lines} <= {
        "listening", "registered", "confirmed", "punched", "send-error", "recv-error", "ignored"}
    assert set(plain["alice"][-1]) == {"event", "name", "session", "peer", "reflexive", "candidates", "heard",
                                       "confirmed", "heard_from", "rounds", "seconds"}  # the report, as the matrix reads it


# --- punchwalk: pure -----------------------------------------------------------------------------

NET = Network(owners={"192.168.1.2": "alice", "192.168.2.2": "bob", "203.0.113.100": "server",
                      "203.0.113.1": "nat-a", "203.0.113.21": "nat-b"},
              chains={"alice": ["nat-a"], "bob": ["nat-b"], "server": [], "nat-a": [], "nat-b": []},
              gateways=frozenset({"nat-a", "nat-b"}))
ROW_A = {"protocol": "udp", "internal": "192.168.1.2:40000", "external": "203.0.113.1:40000", "remote": "*",
         "packets_out": 2, "packets_in": 0, "sessions": [{"remote": "203.0.113.21:40000"}]}
ROW_B = {"protocol": "udp", "internal": "192.168.2.2:40000", "external": "203.0.113.21:40000", "remote": "*",
         "packets_out": 0, "packets_in": 1, "sessions": []}


def punch_line(event: str, n: int, ts: float, **where: str) -> dict[str, Any]:
    return {"event": event, **where, "ts": ts, "message": {"t": "punch", "session": "s", "from": "alice",
                                                             "heard": False, "n": n}}


def test_a_filtered_event_is_charged_to_the_one_datagram_it_belongs_to_and_receipts_match_by_number() -> None:
    alice = [punch_line("sent", 1, 10.0, to="203.0.113.21:40000"), punch_line("sent", 2, 10.05, to="203.0.113.21:40000")]
    bob = [punch_line("received", 2, 10.051, **{"from": "203.0.113.1:40000"})]
    filtered = {"seq": 7, "kind": "filtered", "reason": "filtered", "side": "outside", "ts": 10.001,
                "packet": "udp 203.0.113.1:40000 -> 203.0.113.21:40000 len=60"}
    seen = {"nat-a": Seen("nat-a", (), (), (ROW_A,)), "nat-b": Seen("nat-b", (filtered,), (), (ROW_B,))}
    rows = punchwalk.from_traces(NET, {"alice": ("alice", alice), "bob": ("bob", bob), "rendezvous": ("server", [])},
                                 seen, {"alice": "192.168.1.2", "bob": "192.168.2.2", "server": "203.0.113.100"},
                                 {"alice": 40000, "bob": 40000, "rendezvous": 3478}, started=9.5)
    first, second = rows
    assert (first["outcome"], first["end"], first["reason"], first["t"]) == ("dropped", "nat-b", "filtered", 0.5)
    assert first["hops"][-1]["how"].startswith("event #7 filtered")
    assert second["outcome"] == "delivered" and second["end"] == "bob"
    assert [h["verdict"] for h in second["hops"]] == ["forward", "forward"]
    assert second["label"] == "check alice -> bob at 203.0.113.21:40000 (heard the peer: no)"


def hop(node: str, src: str, dst: str, out_src: str, events: tuple = ()) -> dict[str, Any]:
    return {"t": "nat", "node": node, "side": "inside", "verdict": "forward", "events": list(events),
            "in": f"udp {src} -> {dst} len=50", "out": f"udp {out_src} -> {dst} len=50"}


def test_the_first_datagram_to_a_new_remote_is_marked_as_opening_the_nat() -> None:
    msgs = [{"hops": [hop("nat-a", "192.168.1.2:40000", "203.0.113.100:3478", "203.0.113.1:40000", ("mapping-created",))]},
            {"hops": [hop("nat-a", "192.168.1.2:40000", "203.0.113.21:40000", "203.0.113.1:40000")]},
            {"hops": [hop("nat-a", "192.168.1.2:40000", "203.0.113.21:40000", "203.0.113.1:40000")]}]
    after = {"nat-a": [{**ROW_A, "sessions": [{"remote": "203.0.113.100:3478"}, {"remote": "203.0.113.21:40000"}]}]}
    punchwalk.mark_openings(msgs, {"nat-a": []}, after, {"nat-a": "address-and-port-dependent"})
    assert msgs[0]["hops"][0]["opens"] == ("opens nat-a: mapping 192.168.1.2:40000 -> 203.0.113.1:40000, "
                                           "its filter for 203.0.113.100:3478")
    assert msgs[1]["hops"][0]["opens"] == "opens nat-a: its filter for 203.0.113.21:40000"
    assert "opens" not in msgs[2]["hops"][0]
    eif = [{"hops": [hop("nat-a", "192.168.1.2:40000", "203.0.113.21:40000", "203.0.113.1:40000")]}]
    punchwalk.mark_openings(eif, {"nat-a": []}, after, {"nat-a": "endpoint-independent"})
    assert "opens" not in eif[0]["hops"][0]  # no filter to open, no mapping made


def test_repeats_are_drawn_twice_then_counted_on_one_row() -> None:
    same = {"from": "alice", "label": "check", "sent": "udp a -> b len=5", "outcome": "dropped", "end": "nat-b",
            "reason": "filtered", "hops": [], "t": 0.1}
    other = {**same, "from": "bob", "outcome": "delivered", "end": "alice"}
    rows = punchwalk.fold([same] * 5 + [other] + [same])
    assert [r.get("fold", False) for r in rows] == [False, False, True, False]
    assert rows[2]["count"] == 4 and rows[2]["outcome"] == "dropped"
    capped = punchwalk.fold([{**same, "label": str(i)} for i in range(10)], max_rows=4)
    assert len(capped) == 5 and capped[-1]["count"] == 6 and capped[-1]["outcome"] == "more"
