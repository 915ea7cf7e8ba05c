"""The built-in peer's pure parts (rendezvous pairing, punch state) and the matrix plug-in helpers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from natlab.errors import ConfigError
from natlab.matrix.lab import SideRun, UserApp, fill, judge
from natlab.hostprogs.peer import Punch, Sessions, decode, encode

SERVER = ("203.0.113.100", 3478)


def test_the_rendezvous_answers_a_binding_and_pairs_the_second_peer():
    sessions = Sessions()
    [(to, binding)] = sessions.register({"t": "register", "session": "s", "name": "alice", "host": []},
                                        ("203.0.113.1", 40000))
    assert to == ("203.0.113.1", 40000) and binding["reflexive"] == "203.0.113.1:40000"
    replies = sessions.register({"t": "register", "session": "s", "name": "bob", "host": ["192.168.1.2:40000"]},
                                ("203.0.113.2", 1234))
    told = {to: msg for to, msg in replies if msg["t"] == "peer"}
    assert told[("203.0.113.2", 1234)]["reflexive"] == "203.0.113.1:40000"
    assert told[("203.0.113.1", 40000)] == {"t": "peer", "session": "s", "name": "bob",
                                           "reflexive": "203.0.113.2:1234", "host": ["192.168.1.2:40000"]}


def test_other_sessions_are_not_paired():
    sessions = Sessions()
    sessions.register({"t": "register", "session": "one", "name": "alice"}, ("203.0.113.1", 1))
    assert len(sessions.register({"t": "register", "session": "two", "name": "bob"}, ("203.0.113.2", 1))) == 1


def punch_state() -> Punch:
    state = Punch("alice", "s", SERVER, ["192.168.1.2:40000"])
    state.on_message({"t": "binding", "session": "s", "reflexive": "203.0.113.1:40000"}, SERVER)
    state.on_message({"t": "peer", "session": "s", "name": "bob", "reflexive": "203.0.113.2:40000",
                      "host": ["192.168.1.2:40000"]}, SERVER)
    return state


def test_a_peer_registers_until_it_knows_both_endpoints_then_punches_every_candidate():
    fresh = Punch("alice", "s", SERVER, [])
    assert [to for to, _ in fresh.outgoing()] == [SERVER]
    state = punch_state()
    assert state.ready
    assert [to for to, _ in state.outgoing()] == [("203.0.113.2", 40000), ("192.168.1.2", 40000)]


def test_a_punch_from_the_peer_is_heard_answered_and_its_source_becomes_a_candidate():
    state = punch_state()
    answers = state.on_message({"t": "punch", "session": "s", "from": "bob", "heard": False}, ("203.0.113.2", 5555))
    assert state.heard and not state.confirmed and not state.done
    assert answers == [(("203.0.113.2", 5555), state.punch())]
    assert "203.0.113.2:5555" in state.candidates  # peer-reflexive
    assert json.loads(state.punch())["heard"] is True
    state.on_message({"t": "punch", "session": "s", "from": "bob", "heard": True}, ("203.0.113.2", 5555))
    assert state.done


def test_a_peer_ignores_its_own_punches_other_sessions_and_strangers_posing_as_the_server():
    state = punch_state()
    assert state.on_message({"t": "punch", "session": "s", "from": "alice", "heard": True}, ("192.168.1.2", 40000)) == []
    assert state.on_message({"t": "punch", "session": "x", "from": "bob", "heard": True}, ("203.0.113.2", 1)) == []
    state.on_message({"t": "binding", "session": "s", "reflexive": "6.6.6.6:6"}, ("203.0.113.9", 3478))
    assert not state.heard and state.reflexive == "203.0.113.1:40000"


def test_decode_never_raises_on_foreign_datagrams():
    assert decode(b"\xff\x00") is None and decode(b"[1]") is None and decode(b'{"x": 1}') is None
    assert decode(encode({"t": "punch"})) == {"t": "punch"}


def test_the_peer_module_runs_and_explains_itself():
    done = subprocess.run([sys.executable, "-m", "natlab.hostprogs.peer", "punch", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--session" in done.stdout


def test_fill_replaces_placeholders_per_word_and_keeps_shell_variables():
    argv = fill("app --to {server} --name '{self} x' ${HOME}", {"server": "203.0.113.100:3478", "self": "alice"})
    assert argv == ["app", "--to", "203.0.113.100:3478", "--name", "alice x", "${HOME}"]


def test_a_user_app_with_an_unclosed_quote_is_refused():
    with pytest.raises(ConfigError, match="not a valid command line"):
        UserApp("app '", "app")


def side(code, out=""):
    return SideRun(("app",), code, out, "", 0.1)


@pytest.mark.parametrize("sides, success, ok", [
    ((side(0), side(0)), None, True),
    ((side(0), side(1)), None, False),
    ((side(None), side(0)), None, False),  # killed after its time
    ((side(0, "connected"), side(0, "connected")), "conn", True),
    ((side(0, "connected"), side(0, "nothing")), "conn", False),
])
def test_judge_wants_both_sides_to_exit_0_and_match(sides, success, ok):
    assert judge(sides, success) is ok
