"""extract_interactions where the answer is exact (AND mode at tau = 0) and under its time budget.

Oracles: the Möbius transform by its definition (shapiq's ExactComputer), HiGHS on the explicit LP
(tests/lp_oracle.py) for AND-OR, and weak duality for a time-limited certificate.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from auditor.engine.extraction import SolverOptions, default_time_limit, extract_batch, extract_interactions
from lp_oracle import dense_lp_optimum
from shapiq_fixtures import as_vector, games, shapiq_index


@pytest.mark.parametrize("n", [4, 8, 10])
def test_and_mode_without_slack_is_the_moebius_transform_with_gap_zero(n: int) -> None:
    values = games(n)["random"]
    result = extract_interactions(values, qthres=0.0, mode="and")
    expected, _ = as_vector(shapiq_index(values, "Moebius", None), n)
    expected[0] = 0.0  # the engine reports v(empty) as the offset, not as a term
    np.testing.assert_allclose(result.and_terms, expected, rtol=0, atol=1e-12 * np.abs(values).max())
    assert result.gap == 0.0 and result.dual_bound == result.objective
    assert result.objective == pytest.approx(np.abs(expected).sum(), rel=1e-12)
    assert result.extra["method"] == "moebius" and result.extra["time_limit_hit"] is False
    assert not result.or_terms.any() and np.abs(result.q).max() <= 1e-12 * np.abs(values).max()


def test_the_moebius_path_takes_milliseconds_at_n_14() -> None:
    values = np.random.default_rng(14).normal(size=1 << 14)
    extract_interactions(values[:16], qthres=0.0, mode="and")  # imports
    started = time.perf_counter()
    result = extract_interactions(values, qthres=0.0, mode="and")
    assert time.perf_counter() - started < 0.5  # ~2-10 ms measured; generous for a loaded CPU
    assert result.gap == 0.0 and result.iterations == 0


def test_a_game_with_no_worth_has_tau_zero_and_takes_the_exact_path_in_a_batch() -> None:
    """tau = qthres |v(N) - v(empty)| = 0 when v(N) = v(empty): unique point even at qthres > 0."""
    flat = games(6)["random"]
    flat[-1] = flat[0]
    batch = np.stack([games(6)["soum-low"], flat, games(6)["dummy"]])
    results = extract_batch(batch, qthres=0.04, mode="and")
    assert [r.extra["method"] for r in results][1] == "moebius" and results[1].gap == 0.0
    for game, result in zip(batch, results):
        single = extract_interactions(game, qthres=0.04, mode="and")
        assert result.objective == pytest.approx(single.objective, rel=1e-9)
        assert result.objective == pytest.approx(dense_lp_optimum(game, 0.04, "and"), rel=1e-6)


def test_and_or_without_slack_still_solves_the_lp() -> None:
    """q = 0 does not pin the split down: OR(a, b) and AND(a) + AND(b) - AND(a, b) are the same game."""
    result = extract_interactions(np.array([0.0, 1.0, 1.0, 1.0]), qthres=0.0)
    assert result.objective == pytest.approx(1.0) and result.or_terms[3] == pytest.approx(1.0)
    values = games(7)["soum-low"]
    result = extract_interactions(values, qthres=0.0)
    assert result.extra["method"] != "moebius"
    assert result.objective == pytest.approx(dense_lp_optimum(values, 0.0), rel=1e-6) and result.gap <= 1e-6
    np.testing.assert_allclose(result.reconstruct(), result.values, atol=1e-9)


def test_every_solve_has_a_time_budget_that_grows_with_2_to_the_n() -> None:
    assert SolverOptions().time_limit is None  # None means default_time_limit(n), never unlimited
    budgets = [default_time_limit(n) for n in range(1, 21)]
    assert min(budgets) >= 60.0 and budgets == sorted(budgets)
    assert default_time_limit(16) == pytest.approx(4 * default_time_limit(14))


@pytest.mark.parametrize("mode", ["and-or", "and"])
def test_a_solve_that_hits_its_time_limit_is_marked_and_certified(mode: str) -> None:
    values = np.random.default_rng(3).normal(size=1 << 9)
    result = extract_interactions(values, qthres=0.0 if mode == "and-or" else 0.04, mode=mode,
                                  options=SolverOptions(time_limit=0.01))
    assert result.extra["time_limit_hit"] is True and result.gap > 1e-6
    optimum = dense_lp_optimum(values, 0.0 if mode == "and-or" else 0.04, mode)
    assert result.dual_bound <= optimum * (1 + 1e-9) <= result.objective * (1 + 1e-9) + 1e-12
    assert result.gap == pytest.approx((result.objective - result.dual_bound) / result.objective, rel=1e-9)
    np.testing.assert_allclose(result.reconstruct(), result.values + result.q, atol=1e-9)
    assert np.abs(result.q).max() <= result.tau * (1 + 1e-7) + 1e-12


def test_a_finished_solve_is_not_marked_and_an_infinite_limit_is_allowed() -> None:
    result = extract_interactions(games(6)["soum-low"], options=SolverOptions(time_limit=math.inf))
    assert result.extra["time_limit_hit"] is False and result.gap <= 1e-6


@pytest.mark.parametrize("limit", [0.0, -1.0, float("nan")])
def test_a_time_limit_must_be_positive(limit: float) -> None:
    with pytest.raises(ValueError, match="time_limit must be positive"):
        extract_interactions(np.zeros(4), options=SolverOptions(time_limit=limit))
