"""PCP PEER in the engine (RFC 6887 section 12): the 5-tuple's dynamic mapping, held, with a manual clock."""

import random

from natlab.engine import Drop, Engine, Forward, Policy, Side
from natlab.engine.policy import Dependency, Limits, PortAssignment, Timeouts
from natlab.engine.types import Endpoint
from natlab.packet import build

UDP, TCP = 17, 6
POOL = "203.0.113.1"
ALICE = Endpoint.of("192.168.1.2", 5000)
BOB = Endpoint.of("198.51.100.9", 7000)
NONCE, OTHER = b"n" * 12, b"o" * 12


def engine(filtering=Dependency.ADDRESS_AND_PORT_DEPENDENT, mapping=Dependency.ENDPOINT_INDEPENDENT,
           **knobs) -> Engine:
    policy = Policy(filtering=filtering, mapping=mapping).replace(**knobs)
    return Engine(policy, [POOL], random.Random(7))


def from_peer(e: Engine, peer: Endpoint, port: int, now: float):
    e.expire(now)
    return e.process(build.udp(peer.ip, peer.port, POOL, port, b"hi"), Side.OUTSIDE, now)


def out(e: Engine, dst: Endpoint, now: float):
    e.expire(now)
    return e.process(build.udp(ALICE.ip, ALICE.port, dst.ip, dst.port, b"hi"), Side.INSIDE, now)


def udp_timeout(e: Engine) -> float:
    return e.policy.timeouts.udp_unreplied or e.policy.timeouts.udp


def test_a_peer_makes_the_mapping_outbound_traffic_would_and_the_peer_gets_in():
    e = engine()
    answer, tick = e.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)
    assert answer.ok and answer.created and answer.expires == 600.0
    assert [ev.kind.value for ev in tick.events] == ["mapping-created", "port-mapping-created"]
    [view] = e.mappings()
    assert view.kind == "dynamic" and view.external_port == answer.external.port
    verdict = from_peer(e, BOB, answer.external.port, 1.0)
    assert type(verdict) is Forward and verdict.data[16:20] == ALICE.ip.packed
    # the first real packet to the peer leaves through the same mapping
    sent = out(e, BOB, 2.0)
    assert int.from_bytes(sent.data[20:22], "big") == answer.external.port


def test_filtering_decides_who_else_gets_in_as_for_outbound_traffic():
    strict = engine()
    port = strict.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)[0].external.port
    stranger = Endpoint.of("192.0.2.44", 7000)
    assert type(from_peer(strict, stranger, port, 1.0)) is Drop
    assert type(from_peer(strict, Endpoint(BOB.addr, 7001), port, 1.0)) is Drop
    open_ = engine(filtering=Dependency.ENDPOINT_INDEPENDENT)
    port = open_.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)[0].external.port
    assert type(from_peer(open_, stranger, port, 1.0)) is Forward


def test_the_hold_outlives_the_sessions_own_timer_then_it_ends():
    e = engine()
    answer, _ = e.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)
    assert udp_timeout(e) < 600
    e.expire(599.0)
    assert len(e.mappings()) == 1
    e.expire(600.5)
    assert e.mappings() == ()


def test_traffic_during_the_hold_does_not_shorten_it():
    e = engine()
    answer, _ = e.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)
    out(e, BOB, 10.0)  # the session's own timer: 10 + udp_unreplied
    e.expire(10.0 + udp_timeout(e) + 1)
    assert len(e.mappings()) == 1
    e.expire(601.0)
    assert e.mappings() == ()


def test_the_answered_lifetime_is_never_shorter_than_the_mappings_own_timer():
    e = engine(timeouts=Timeouts(udp=900, udp_unreplied=900))
    answer, _ = e.peer(UDP, ALICE, BOB, 0, 120.0, NONCE, 0.0)
    assert answer.expires == 900.0
    e.expire(500.0)
    assert len(e.mappings()) == 1


def test_a_refresh_with_the_same_nonce_extends_the_hold():
    e = engine()
    first, _ = e.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)
    again, tick = e.peer(UDP, ALICE, BOB, 0, 1500.0, NONCE, 500.0)
    assert again.ok and not again.created and again.external == first.external and again.expires == 1500.0
    assert [ev.kind.value for ev in tick.events] == ["port-mapping-refreshed"]
    e.expire(1000.0)
    assert len(e.mappings()) == 1


def test_a_refresh_or_delete_with_another_nonce_is_refused():
    e = engine()
    e.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)
    assert e.peer(UDP, ALICE, BOB, 0, 900.0, OTHER, 1.0)[0].refusal == "nonce-mismatch"
    assert e.peer(UDP, ALICE, BOB, 0, None, OTHER, 1.0)[0].refusal == "nonce-mismatch"
    assert e.port_mapping_counters()["peer.refused.nonce-mismatch"] == 2
    e.expire(599.0)
    assert len(e.mappings()) == 1


def test_a_peer_takes_over_a_mapping_traffic_made_whatever_its_nonce():
    e = engine()
    sent = out(e, BOB, 0.0)
    port = int.from_bytes(sent.data[20:22], "big")
    answer, _ = e.peer(UDP, ALICE, BOB, 9999, 600.0, OTHER, 1.0)
    assert answer.ok and not answer.created and answer.external.port == port  # the suggestion loses


def test_lifetime_zero_ends_the_hold_and_the_mapping_lives_on_by_its_own_timer():
    e = engine()
    e.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)
    out(e, BOB, 100.0)
    answer, tick = e.peer(UDP, ALICE, BOB, 0, None, NONCE, 101.0)
    own = 100.0 + udp_timeout(e)
    assert answer.ok and answer.expires == own
    assert [ev.kind.value for ev in tick.events] == ["port-mapping-deleted"]
    e.expire(own - 1)
    assert len(e.mappings()) == 1
    e.expire(own + 1)
    assert e.mappings() == ()


def test_lifetime_zero_right_after_the_peer_gives_the_session_back_its_own_timer():
    e = engine()
    e.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)
    answer, _ = e.peer(UDP, ALICE, BOB, 0, None, NONCE, 1.0)
    assert answer.expires == udp_timeout(e)
    e.expire(udp_timeout(e) + 1)
    assert e.mappings() == ()


def test_a_delete_of_nothing_succeeds():
    answer, tick = engine().peer(UDP, ALICE, BOB, 0, None, NONCE, 0.0)
    assert answer.ok and answer.external is None and tick.events == ()


def test_a_free_suggested_port_is_taken_for_a_new_mapping():
    e = engine(port_assignment=PortAssignment.RANDOM)
    answer, _ = e.peer(UDP, ALICE, BOB, 40000, 600.0, NONCE, 0.0)
    assert answer.external.port == 40000
    assert type(from_peer(e, BOB, 40000, 1.0)) is Forward


def test_a_suggested_port_in_use_is_not_taken():
    e = engine()
    e.map_port("pcp", UDP, Endpoint.of("192.168.1.3", 1), 40000, 900.0, (), 0.0)
    answer, _ = e.peer(UDP, ALICE, BOB, 40000, 600.0, NONCE, 0.0)
    assert answer.ok and answer.external.port != 40000


def test_an_endpoint_dependent_nat_gives_each_peer_its_own_mapping():
    e = engine(mapping=Dependency.ADDRESS_AND_PORT_DEPENDENT)
    a = e.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)[0]
    b = e.peer(UDP, ALICE, Endpoint.of("192.0.2.5", 7000), 0, 600.0, OTHER, 0.0)[0]
    assert a.external.port != b.external.port and len(e.mappings()) == 2


def test_a_nat_out_of_mappings_refuses_with_the_drop_reason():
    e = engine(limits=Limits(max_mappings=1))
    assert e.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)[0].ok
    refused, _ = e.peer(UDP, Endpoint.of("192.168.1.3", 5000), BOB, 0, 600.0, NONCE, 0.0)
    assert refused.refusal == "limit-reached"


def test_a_tcp_peer_lets_the_peers_syn_in():
    e = engine()
    answer, _ = e.peer(TCP, ALICE, BOB, 0, 600.0, NONCE, 0.0)
    e.expire(300.0)  # past tcp_transitory, still held
    verdict = e.process(build.tcp(BOB.ip, BOB.port, POOL, answer.external.port, flags=0x02), Side.OUTSIDE, 300.0)
    assert type(verdict) is Forward


def test_a_flush_forgets_every_hold():
    e = engine()
    e.peer(UDP, ALICE, BOB, 0, 600.0, NONCE, 0.0)
    e.flush(1.0)
    assert e.mappings() == ()
    assert e.peer(UDP, ALICE, BOB, 0, 600.0, OTHER, 2.0)[0].ok  # no owner any more
