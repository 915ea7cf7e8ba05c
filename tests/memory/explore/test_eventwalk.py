"""The walk told from the gateways' records agrees with the traced walk, and says what it cannot see.

On the memory twin both exist: the tracer watches every engine verdict (the
truth), and :func:`natlab.explore.eventwalk.observed_walk` reads only what a real
lab's gateways record (events, mapping tables, counters), as the workbench does
on netns and Docker. Wherever the observed walk claims a hop, the traced walk
must have the same hop with the same verdict and the same packet before and
after; where the records cannot tell, the hop must say so instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from natlab.explore.eventwalk import Endpoint, Flow, Network, Seen, flow_of_summary, observed_walk
from natlab.explore.session import Workbench

TOPOLOGIES = Path(__file__).resolve().parents[3] / "natlab" / "data" / "topologies"

# (topology, probes in order: proto, from, to, sport, at, reply)
CASES = {
    "double-nat-out-and-back": ("double-nat", [("udp", "alice", "server:3478", 40000, "", True)]),
    "double-nat-tcp": ("double-nat", [("tcp", "alice", "server:80", 40001, "", True)]),
    "double-nat-icmp": ("double-nat", [("icmp", "alice", "server", 0, "", True)]),
    "double-nat-unsolicited": ("double-nat", [("udp", "server", "cgn:40000", 5555, "alice:40000", False)]),
    "double-nat-existing-mapping": ("double-nat", [("udp", "alice", "server:3478", 40000, "", False),
                                                   ("udp", "alice", "server:3478", 40000, "", True)]),
    "double-nat-through-both-inbound": ("double-nat", [("udp", "alice", "server:3478", 40000, "", False),
                                                       ("udp", "server", "cgn:${seen}", 3478, "alice:40000", False)]),
    "two-homes-filtered": ("two-homes", [("udp", "alice", "server:3478", 40000, "", False),
                                         ("udp", "server", "nat-a:40000", 5555, "alice:40000", False)]),
    "two-homes-peer-to-peer": ("two-homes", [("udp", "bob", "server:3478", 5000, "", False),
                                             ("udp", "alice", "nat-b:5000", 4000, "bob:5000", True)]),
    "hairpin": ("hairpin", [("udp", "bob", "server:3478", 5000, "", False),
                            ("udp", "alice", "nat:5000", 4000, "bob:5000", True)]),
    "same-home-no-nat": ("hairpin", [("udp", "alice", "bob:5000", 4001, "", True)]),
}


def _plain(summary: str) -> str:
    """A traced packet's summary without what the records cannot know (length, TCP flags, ICMP seq)."""
    return re.sub(r" (len=\d+|\[[A-Z,]+\]|seq=\d+)", "", summary).strip()


def _run(name: str) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
    topo, probes = CASES[name]
    traced, told = Workbench(TOPOLOGIES / f"{topo}.yaml"), Workbench(TOPOLOGIES / f"{topo}.yaml")
    told.tracer = None  # as on a real lab: only the gateways' records
    out: tuple[list, list] = ([], [])
    seen = ""
    try:
        for proto, src, to, sport, at, reply in probes:
            to = to.replace("${seen}", seen.rsplit(":", 1)[-1])
            a = traced.probe(proto, src, to, sport, at, reply)
            b = told.probe(proto, src, to, sport, at, reply)
            assert a["result"] == {**b["result"], "events": a["result"]["events"]}, "the same lab, the same outcome"
            assert b["observed"] == "gateway records" and a["observed"] == "traced"
            seen = a["result"]["seen"] or ""
            out[0].append(a["packets"])
            out[1].append(b["packets"])
    finally:
        traced.close()
        told.close()
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_observed_walk_agrees_with_the_traced_one(name: str) -> None:
    traced_runs, told_runs = _run(name)
    for traced, told in zip(traced_runs, told_runs):
        assert 1 <= len(told) <= 2
        for leg in told:
            # the first traced packet each way is the one the leg stands for (TCP: the SYN, the SYN-ACK)
            truth = next(p for p in traced if p["from"] == leg["from"])
            assert _plain(truth["sent"]) == leg["sent"]
            assert (leg["outcome"], leg["end"]) == (truth["outcome"], truth["end"])
            if leg["outcome"] == "delivered":
                assert _plain(truth["received"]) == leg["received"]
            if leg["outcome"] == "dropped":
                assert leg["reason"] == truth["reason"]
            assert [h["node"] for h in leg["hops"]] == [h["node"] for h in truth["hops"]]
            for hop, real in zip(leg["hops"], truth["hops"]):
                assert hop["verdict"] == real["verdict"] and hop["side"] == real["side"], hop
                assert hop["in"] == _plain(real["in"]) and hop["how"]
                assert hop.get("out") == (_plain(real["out"]) if "out" in real else None), hop


def test_a_reply_leg_follows_the_answer_back_through_both_nats() -> None:
    _, told = _run("double-nat-out-and-back")
    (out, back), = told
    assert [h["node"] for h in out["hops"]] == ["home-router", "cgn"]
    assert [h["node"] for h in back["hops"]] == ["cgn", "home-router"]
    assert back["answer"] and back["received"].endswith("-> 192.168.1.2:40000")
    assert "counted 1 more packet(s) in" in back["hops"][0]["how"]


# -- what the records cannot tell, the walk says ----------------------------------------------

NET = Network(owners={"192.168.1.2": "alice", "203.0.113.1": "nat", "203.0.113.100": "server"},
              chains={"alice": ["nat"], "server": [], "nat": []}, gateways=frozenset({"nat"}))
RESULT = {"proto": "udp", "src": "alice", "dst": "203.0.113.100", "dport": 3478, "sport": 4000,
          "receiver": "server", "delivered": False, "seen": None, "replied": None, "reply_from": None,
          "detail": "nothing arrived within 1 s"}


@pytest.mark.parametrize("queued,verdict,words", [
    (0, "unseen", "queued no packet from its inside"),
    (3, "unobserved", "handled 3 packet(s) from its inside"),
    (None, "unobserved", "handled packets from its inside"),
])
def test_a_nat_without_a_record_of_the_packet_says_so(queued: Any, verdict: str, words: str) -> None:
    seen = {"nat": Seen("nat", from_inside=queued, from_outside=0)}
    (leg,) = observed_walk(NET, seen, RESULT, "192.168.1.2", "203.0.113.100", 3478)
    (hop,) = leg["hops"]
    assert hop["verdict"] == verdict and words in hop["how"] and "out" not in hop
    assert leg["outcome"] == "lost" and "no gateway on the way recorded a drop" in leg["reason"]
    assert "nothing arrived within 1 s" in leg["reason"]


def test_a_mapping_of_another_flow_is_not_taken_for_this_one() -> None:
    other = {"protocol": "udp", "internal": "192.168.1.2:5000", "external": "203.0.113.1:5000", "remote": "*",
             "packets_out": 1, "packets_in": 0}
    seen = {"nat": Seen("nat", after=(other,), from_inside=2, from_outside=0)}
    (leg,) = observed_walk(NET, seen, RESULT, "192.168.1.2", "203.0.113.100", 3478)
    assert leg["hops"][0]["verdict"] == "unobserved"


@pytest.mark.parametrize("text,flow", [
    ("udp 203.0.113.100:5555 -> 203.0.113.1:40000 len=12",
     Flow("udp", Endpoint("203.0.113.100", 5555), Endpoint("203.0.113.1", 40000))),
    ("tcp 192.168.1.2:40001 -> 203.0.113.100:80 [SYN]",
     Flow("tcp", Endpoint("192.168.1.2", 40001), Endpoint("203.0.113.100", 80))),
    ("icmp echo-request id=7 seq=1 192.168.1.2 -> 203.0.113.100",
     Flow("icmp", Endpoint("192.168.1.2", 7), Endpoint("203.0.113.100", None), "echo-request")),
    ("icmp echo-reply id=9 seq=1 203.0.113.100 -> 203.0.113.1",
     Flow("icmp", Endpoint("203.0.113.100", None), Endpoint("203.0.113.1", 9), "echo-reply")),
    ("malformed (3 bytes)", None),
    (None, None),
])
def test_packet_summaries_in_events_read_as_flows(text: Any, flow: Any) -> None:
    assert flow_of_summary(text) == flow
