"""The in-memory hole-punching matrix agrees with RFC 4787's prediction."""

import pytest

from natlab.matrix.memory import CLASSIC, EXPECTED_CLASSIC, format_matrix, punch, reflexive, run_matrix, two_homes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classic_matrix_matches_theory(seed):
    assert run_matrix(CLASSIC, seed) == EXPECTED_CLASSIC


def test_expected_table_is_symmetric_and_complete():
    assert len(EXPECTED_CLASSIC) == 16
    for (a, b), ok in EXPECTED_CLASSIC.items():
        assert EXPECTED_CLASSIC[(b, a)] == ok


@pytest.mark.parametrize(
    "a, b, alice_heard, bob_heard",
    [
        ("symmetric", "port-restricted-cone", False, False),
        ("symmetric", "symmetric", False, False),
    ],
)
def test_failures_are_total(a, b, alice_heard, bob_heard):
    result = punch(two_homes(a, b, seed=0))
    assert (result.alice_heard_bob, result.bob_heard_alice) == (alice_heard, bob_heard)


def test_symmetric_vs_restricted_cone_needs_a_peer_reflexive_answer():
    result = punch(two_homes("symmetric", "restricted-cone", seed=0))
    assert result.ok and result.rounds >= 2  # bob must first learn alice's new port


def test_reflexive_endpoint_is_the_nat_pool():
    net = two_homes("full-cone", "full-cone", seed=0)
    assert reflexive(net, "alice") == ("203.0.113.1", 40000)  # port preserved


def test_format_shows_seed_and_cells():
    text = format_matrix(EXPECTED_CLASSIC, seed=5)
    assert "seed 5" in text and "FAIL" in text and "ok" in text
