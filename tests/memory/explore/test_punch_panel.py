"""The hole-punch panel's API on the memory twin: a simulation of the peer's algorithm, and it says so.

Through the HTTP API, as the page calls it: behind two full-cone NATs the punch
gets through, behind two symmetric NATs it does not and the rows name the NAT
that filtered each check; either way the page is told plainly that the twin ran
the peer's own state machines (natlab.hostprogs.peer's Punch and Sessions), not
the program, and the attempt is recorded as one ``punch`` step that ``natlab run
--backend memory`` passes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

pytest.importorskip("starlette", reason="natlab explore needs starlette (pip install 'natlab[explore]')")
pytest.importorskip("httpx", reason="the API tests use starlette's TestClient (pip install httpx)")

with warnings.catch_warnings():  # starlette 1.x suggests httpx2; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from natlab.explore.security import Access  # noqa: E402
from natlab.explore.server import create_app  # noqa: E402

TOKEN = "t0ken-for-punch-tests"
BASE = "http://127.0.0.1:8124"


@pytest.fixture
def client(workbench: Any) -> Iterator[TestClient]:
    access = Access(TOKEN)
    access.listen_on("127.0.0.1", 8124)
    with TestClient(create_app(workbench, access), base_url=BASE) as c:
        yield c


def post(client: TestClient, action: str, body: Any) -> Any:
    return client.post(f"/api/{action}", json=body, headers={"X-Natlab-Token": TOKEN})


def state(client: TestClient) -> dict[str, Any]:
    return client.get("/api/state", params={"token": TOKEN}).json()


def punch(client: TestClient, preset_a: str, preset_b: str) -> dict[str, Any]:
    for gw, preset in (("nat-a", preset_a), ("nat-b", preset_b)):
        assert post(client, "configure", {"gateway": gw, "behaviour": preset}).status_code == 200
    r = post(client, "punch", {"a": "alice", "b": "bob", "server": "server", "timeout": 3})
    assert r.status_code == 200, r.text
    return r.json()


def natlab_run(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "natlab", "run", "--backend", "memory", str(path)],
                          capture_output=True, text=True, timeout=120)


def checks(out: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in out["messages"] if m.get("kind") == "check" and not m.get("fold")]


def test_full_cone_hosts_punch_through_and_the_page_says_it_simulated_the_peer(
        client: TestClient, tmp_path: Path) -> None:
    out = punch(client, "full-cone", "full-cone")
    assert out["ok"] is True and out["punched"] is True and out["how"] == "in-process"
    assert "Simulated on the in-memory twin" in out["note"] and "not the peer program" in out["note"]
    assert "Punch" in out["note"] and "Sessions" in out["note"]
    assert out["lanes"] == ["alice", "nat-a", "server", "nat-b", "bob"]
    assert all(side["punched"] and side["report"]["event"] == "punched" for side in out["sides"].values())
    assert out["reflexive"] == {"alice": "203.0.113.1:40000", "bob": "203.0.113.21:40000"}
    assert "203.0.113.21:40000" in out["candidates"]["alice"]  # bob's reflexive, from the rendezvous
    through = [m for m in checks(out) if m["outcome"] == "delivered" and m["from"] == "alice" and m["end"] == "bob"]
    assert through and [(h["node"], h["verdict"]) for h in through[0]["hops"]] == [("nat-a", "forward"),
                                                                                  ("nat-b", "forward")]
    first = out["messages"][0]
    assert first["label"].startswith("alice registers") and first["hops"][0]["opens"].startswith("opens nat-a: mapping")
    step = state(client)["record"][-1]["step"]
    assert step == {"punch": {"peers": ["alice", "bob"], "rendezvous": "server", "timeout": 3.0},
                    "expect": {"punched": True}}

    saved = post(client, "save", {"path": str(tmp_path / "punched.yaml")}).json()
    assert saved["verified"] == "passed"
    done = natlab_run(tmp_path / "punched.yaml")
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def test_symmetric_hosts_fail_and_each_check_names_the_nat_that_filtered_it(
        client: TestClient, tmp_path: Path) -> None:
    out = punch(client, "symmetric", "symmetric")
    assert out["ok"] is False and not any(s["punched"] for s in out["sides"].values())
    filtered = {(m["from"], m["end"]) for m in checks(out) if m["outcome"] == "dropped" and m["reason"] == "filtered"}
    assert filtered == {("alice", "nat-b"), ("bob", "nat-a")}  # each other's NAT drops each one's check
    for m in checks(out):
        if m["outcome"] == "dropped" and m["reason"] == "filtered":
            assert m["hops"][-1] == {**m["hops"][-1], "node": m["end"], "verdict": "drop", "reason": "filtered"}
    opens = [h["opens"] for m in checks(out) for h in m["hops"] if h.get("opens")]
    opened = re.compile(r"opens nat-a: mapping 192\.168\.1\.2:40000 -> 203\.0\.113\.1:\d+, its filter for 203\.0\.113\.2\d:\d+")
    assert any(opened.fullmatch(o) for o in opens), opens  # symmetric: a new mapping (and filter) per destination
    folds = [m for m in out["messages"] if m.get("fold")]
    assert folds and sum(f["count"] for f in folds) + len(out["messages"]) - len(folds) == out["datagrams"]

    saved = post(client, "save", {"path": str(tmp_path / "failed.yaml")}).json()
    assert saved["verified"] == "passed"
    doc = yaml.safe_load((tmp_path / "failed.yaml").read_text())
    assert doc["steps"][-1]["expect"] == {"punched": False}
    done = natlab_run(tmp_path / "failed.yaml")
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def test_the_twin_runs_the_peers_own_state_machines(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from natlab.hostprogs import peer

    calls: dict[str, int] = {"on_message": 0, "register": 0}
    on_message, register = peer.Punch.on_message, peer.Sessions.register

    def counted_on_message(self: Any, message: Any, source: Any) -> Any:
        calls["on_message"] += 1
        return on_message(self, message, source)

    def counted_register(self: Any, message: Any, source: Any) -> Any:
        calls["register"] += 1
        return register(self, message, source)

    monkeypatch.setattr(peer.Punch, "on_message", counted_on_message)
    monkeypatch.setattr(peer.Sessions, "register", counted_register)
    out = punch(client, "port-restricted-cone", "port-restricted-cone")
    assert out["ok"] is True
    assert calls["register"] >= 2 and calls["on_message"] > 4


PUNCH_BAD = [
    ({"a": "alice", "b": "mallory", "server": "server"}, "no host 'mallory'"),
    ({"a": "alice", "b": "bob", "server": "bob"}, "all different"),
    ({"a": "alice", "b": "bob", "server": "server", "timeout": "soon"}, "timeout must be a number"),
    ({"a": "alice", "b": "bob", "server": "server", "timeout": 0.1}, "timeout out of range"),
    ({"a": "alice", "b": "bob", "server": "server", "rounds": 6}, "unknown field(s) rounds"),
    ({"a": "alice", "server": "server"}, "punch needs b"),
]


@pytest.mark.parametrize("body,message", PUNCH_BAD, ids=[m for _, m in PUNCH_BAD])
def test_a_bad_punch_is_a_clear_error_and_changes_nothing(client: TestClient, body: dict, message: str) -> None:
    before = state(client)
    r = post(client, "punch", body)
    assert r.status_code == 400 and message in r.json()["error"], r.text
    assert state(client) == before
