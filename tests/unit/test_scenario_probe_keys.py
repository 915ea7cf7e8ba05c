"""Scenario files: the gre probe, keep_open and reply_from are checked before any lab exists."""

from __future__ import annotations

from pathlib import Path

from natlab.scenario import load

from test_scenario_load import error_of, write


def test_gre_probe_takes_no_port(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - gre: {from: alice, to: server:7}\n"))
    assert "GRE packet goes to an address" in err.message and err.key.endswith("gre.to")


def test_gre_refusal_needs_the_sender_to_wait_for_an_answer(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - gre: {from: alice, to: server, at: nobody}\n    expect: {refused: true}\n"))
    assert "GRE sender only learns of a refusal" in err.message and "reply: true" in err.hint


def test_keep_open_is_for_tcp_only(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - udp: {from: alice, to: server:9, keep_open: true}\n"))
    assert "keep_open is for TCP" in err.message and err.line == 3


def test_reply_from_with_a_bad_address_is_located(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "  - udp: {from: alice, to: server:9, reply: true}\n"
                                   "    expect: {reply_from: '203.0.113.999:9'}\n"))
    assert "invalid IPv4 address" in err.message and err.key.endswith("expect.reply_from")


def test_gre_keep_open_and_reply_from_load(tmp_path: Path) -> None:
    scn = load(write(tmp_path, "  - gre: {from: alice, to: server, reply: true}\n"
                               "  - tcp: {from: alice, to: server:80, keep_open: true}\n"
                               "  - udp: {from: alice, to: server:9, reply: true}\n"
                               "    expect: {reply_from: server:9}\n"))
    assert [s.action for s in scn.steps] == ["gre", "tcp", "udp"]
    assert scn.steps[1].spec.keep_open and scn.steps[2].expect.reply_from == "server:9"
