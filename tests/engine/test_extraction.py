"""The AND-OR split solver against scipy's HiGHS on the explicit LP, planted games and properties."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from shapiq import ExactComputer

from auditor.engine.interactions import Interactions
from auditor.engine.extraction import extract_batch, extract_interactions
from auditor.engine.transforms import and_transform

from lp_oracle import dense_lp_optimum
from solver_games import lm_like_game


def planted_game(n: int, noise: float, seed: int) -> np.ndarray:
    """v = 3[x0 and x1] + 2[x2 or x3] - 1.5[x4 and x5 and x6] + 0.5[x7] + N(0, noise^2)."""
    index = np.arange(1 << n)
    bit = lambda i: (index >> i) & 1  # noqa: E731
    clean = 3.0 * (bit(0) & bit(1)) + 2.0 * (bit(2) | bit(3)) - 1.5 * (bit(4) & bit(5) & bit(6)) + 0.5 * bit(7)
    return clean + np.random.default_rng(seed).normal(0.0, noise, 1 << n)


@pytest.mark.parametrize("n", [4, 5, 6, 7])
@pytest.mark.parametrize("mode", ["and-or", "and"])
def test_random_games_reach_the_lp_optimum(n: int, mode: str) -> None:
    values = np.random.default_rng(n).normal(size=1 << n)
    result = extract_interactions(values, mode=mode)
    optimum = dense_lp_optimum(values, 0.04, mode)
    assert result.objective == pytest.approx(optimum, rel=1e-6)
    assert result.dual_bound <= optimum * (1 + 1e-9) + 1e-12
    assert result.gap <= 1e-6


@pytest.mark.parametrize(
    ("n", "qthres"),
    # qthres = 0 forces the noise to be fitted exactly (a dense optimum, the solver's worst case):
    # checked at n = 8 only, to keep the suite fast; the sparse cases go up to n = 10
    [(8, 0.0), (8, 0.04), (8, 0.1), (9, 0.04), (9, 0.1), (10, 0.04)],
)
def test_planted_games_reach_the_lp_optimum(n: int, qthres: float) -> None:
    values = planted_game(n, noise=0.02, seed=n)
    result = extract_interactions(values, qthres=qthres)
    assert result.objective == pytest.approx(dense_lp_optimum(values, qthres), rel=1e-6)
    assert result.gap <= 1e-6


def test_planted_game_recovers_exactly_the_planted_terms() -> None:
    result = extract_interactions(planted_game(8, noise=0.02, seed=7))
    found = {(term.kind, term.players, term.sign) for term in result.salient(0.05)}
    assert found == {("and", (0, 1), 1), ("or", (2, 3), 1), ("and", (4, 5, 6), -1), ("and", (7,), 1)}


def test_and_only_without_slack_is_the_harsanyi_dividend() -> None:
    values = np.random.default_rng(3).normal(size=64)
    result = extract_interactions(values, qthres=0.0, mode="and")
    expected = and_transform(torch.tensor(values - values[0])).numpy()
    np.testing.assert_allclose(result.and_terms, expected, atol=1e-9)
    assert not result.or_terms.any()


def test_shapley_values_match_shapiq() -> None:
    n = 6
    values = np.random.default_rng(5).normal(size=1 << n)
    result = extract_interactions(values, qthres=0.0, mode="and")

    def game(coalitions: np.ndarray) -> np.ndarray:
        return values[(coalitions.astype(np.int64) * (1 << np.arange(n))).sum(axis=1)]

    exact = ExactComputer(game, n_players=n)("SV", order=1)
    expected = [exact.values[exact.interaction_lookup[(i,)]] for i in range(n)]
    np.testing.assert_allclose(result.shapley(), expected, atol=1e-9)


def test_shapley_of_and_or_terms_is_efficient() -> None:
    """Shapley values of the fit v + q sum to (v + q)(N) whatever mixture of AND and OR terms."""
    result = extract_interactions(planted_game(8, 0.05, seed=2))
    assert result.shapley_of_fit().sum() == pytest.approx(result.values[-1] + result.q[-1], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=6),
    qthres=st.floats(min_value=0.0, max_value=0.3),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    mode=st.sampled_from(["and-or", "and"]),
)
def test_universal_matching_and_q_bound_hold_for_any_game(n, qthres, seed, scale, mode) -> None:
    values = np.random.default_rng(seed).normal(size=1 << n) * scale + 5.0
    result = extract_interactions(values, qthres=qthres, mode=mode)
    assert result.values[0] == 0.0 and result.q[0] == 0.0
    np.testing.assert_allclose(result.reconstruct(), result.values + result.q, atol=1e-9 * scale)
    assert np.abs(result.q).max() <= result.tau * (1 + 1e-7) + 1e-12 * scale
    assert result.tau == pytest.approx(qthres * abs(result.values[-1]))
    assert result.gap <= 1e-6
    assert result.or_terms[[1 << i for i in range(n)]].tolist() == [0.0] * n, "order-1 OR is merged into AND"


def test_batch_equals_one_at_a_time() -> None:
    games = np.stack([planted_game(7, 0.05, seed) for seed in range(4)])
    batch = extract_batch(games)
    for game, result in zip(games, batch):
        single = extract_interactions(game)
        assert result.objective == pytest.approx(single.objective, rel=1e-9)


def test_result_survives_a_json_round_trip() -> None:
    result = extract_interactions(planted_game(6, 0.05, 1), names=[f"w{i}" for i in range(6)])
    again = Interactions.from_json(result.to_json())
    assert again.names == result.names and again.gap == result.gap
    np.testing.assert_array_equal(again.and_terms, result.and_terms)
    assert again.salient() == result.salient()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, 2.0, 3.0], "2\\^n"),
        ([0.0, float("nan")], "NaN"),
        ([0.0, float("inf")], "NaN or inf"),
    ],
)
def test_bad_games_are_rejected_with_a_clear_message(values, message) -> None:
    with pytest.raises(ValueError, match=message):
        extract_interactions(np.asarray(values))


def test_names_must_match_players() -> None:
    with pytest.raises(ValueError, match="names"):
        extract_interactions(np.zeros(8), names=["a", "b"])


# --- the dual simplex: both implementations, the fallback, limits ---------------------------------

from dataclasses import replace  # noqa: E402

from auditor.engine.simplex_types import SimplexOptions  # noqa: E402
from auditor.engine.extraction import SolverOptions  # noqa: E402


def _options(backend: str, **simplex) -> SolverOptions:
    return SolverOptions(simplex=SimplexOptions(backend=backend, **simplex))


BACKENDS = ["compiled", "tensor"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["and-or", "and"])
@pytest.mark.parametrize(("n", "qthres"), [(5, 0.04), (7, 0.04), (8, 0.1), (6, 0.0)])
def test_each_dual_simplex_reaches_the_lp_optimum_without_fallback(backend, mode, n, qthres) -> None:
    games = [lm_like_game(n, seed) for seed in range(3)] + [planted_game(n, 0.02, 1) if n >= 8 else
                                                            np.random.default_rng(n).normal(size=1 << n)]
    results = extract_batch(np.stack(games), qthres=qthres, mode=mode, options=_options(backend))
    for game, result in zip(games, results):
        if mode == "and" and qthres == 0:  # a unique feasible point: the Möbius transform, no LP (issue 18)
            assert result.extra["method"] == "moebius"
        else:
            assert result.extra["method"] == "dual-simplex" and result.extra["simplex_converged"]
        assert result.objective == pytest.approx(dense_lp_optimum(game, qthres, mode), rel=1e-6)
        assert result.gap <= 1e-6
        np.testing.assert_allclose(result.reconstruct(), result.values + result.q, atol=1e-9 * np.abs(game).max())
        assert np.abs(result.q).max() <= result.tau * (1 + 1e-7) + 1e-12


def test_the_two_implementations_agree_game_by_game() -> None:
    games = np.stack([lm_like_game(7, seed) for seed in range(6)])
    compiled = extract_batch(games, options=_options("compiled"))
    tensor = extract_batch(games, options=_options("tensor", initial_capacity=4))  # forces the blocks to grow
    for a, b in zip(compiled, tensor):
        assert a.objective == pytest.approx(b.objective, rel=1e-9)
        assert max(a.extra["basis_size"], b.extra["basis_size"]) > 4


def test_a_dense_game_grows_the_compiled_kernel_past_its_first_capacity() -> None:
    values = np.random.default_rng(11).normal(size=1 << 8)  # i.i.d.: an optimum with ~2^(n-1) terms
    result = extract_interactions(values, options=_options("compiled"))
    assert result.extra["basis_size"] > 64 and result.gap <= 1e-6
    assert result.objective == pytest.approx(dense_lp_optimum(values, 0.04), rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unfinished_dual_simplex_is_finished_by_column_generation(backend) -> None:
    values = lm_like_game(7, 4)
    result = extract_interactions(values, options=_options(backend, max_iterations=5))
    assert result.extra["method"] == "dual-simplex+column-generation"
    assert not result.extra["simplex_converged"]
    assert result.objective == pytest.approx(dense_lp_optimum(values, 0.04), rel=1e-6) and result.gap <= 1e-6


def test_column_generation_alone_reaches_the_optimum() -> None:
    values = lm_like_game(7, 5)
    result = extract_interactions(values, options=SolverOptions(method="column-generation"))
    assert result.extra["method"] == "column-generation"
    assert result.objective == pytest.approx(dense_lp_optimum(values, 0.04), rel=1e-6) and result.gap <= 1e-6


def test_a_time_limited_solve_returns_an_honest_certificate() -> None:
    """Stopped early, the point is still feasible and its bounds still bracket the optimum."""
    values = np.random.default_rng(3).normal(size=1 << 9)
    started = time.perf_counter()
    result = extract_interactions(values, options=SolverOptions(time_limit=0.01))
    assert time.perf_counter() - started < 1.0
    optimum = dense_lp_optimum(values, 0.04)
    assert result.dual_bound <= optimum * (1 + 1e-9) <= result.objective * (1 + 1e-9) + 1e-12
    assert result.gap == pytest.approx((result.objective - result.dual_bound) / result.objective, rel=1e-9)
    assert result.gap > 1e-6  # 10 ms is not enough for this dense game: the gap says so
    np.testing.assert_allclose(result.reconstruct(), result.values + result.q, atol=1e-9)
    assert np.abs(result.q).max() <= result.tau * (1 + 1e-7)


def test_parallel_batches_equal_sequential_ones() -> None:
    games = np.stack([lm_like_game(8, seed) for seed in range(8)])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sequential = extract_batch(games)
        torch.set_num_threads(2)
        parallel = extract_batch(games)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(sequential, parallel):
        np.testing.assert_array_equal(a.and_terms, b.and_terms)
        np.testing.assert_array_equal(a.or_terms, b.or_terms)


def test_the_perturbation_only_steers_the_path() -> None:
    """Optima with and without the cost perturbation have the same objective."""
    values = lm_like_game(8, 9)
    plain = extract_interactions(values, options=replace(_options("compiled"), simplex=SimplexOptions(perturbation=0.0)))
    perturbed = extract_interactions(values)
    assert plain.objective == pytest.approx(perturbed.objective, rel=1e-7)
