"""The dense path: games whose optimum is dense go from the dual simplex to auditor.engine.interior_point.

Every optimum is checked against scipy's HiGHS on the explicit LP (tests/lp_oracle.py), every
normal matrix against one multiplied out from the definitions of the AND and OR atoms.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from auditor.engine import interior_point, simplex
from auditor.engine.certificate import admissible_masks
from auditor.engine.extraction import SolverOptions, extract_batch, extract_interactions

from lp_oracle import dense_lp_optimum
from solver_games import lm_like_game


def dense_game(n: int, seed: int) -> np.ndarray:
    """An LM-like game with v(N) pinned next to v(empty): tau = 0.04 |v(N) - v(empty)| is then far
    below the noise, and the optimum must fit the noise with a dense set of terms (the case of the
    hard lm samples of bench/games.py, e.g. seed 207 at n = 10)."""
    values = lm_like_game(n, seed)
    values[-1] = values[0] + 0.003 * np.abs(values - values[0]).max()
    return values


def explicit_matrix(n: int, mode: str = "and-or") -> np.ndarray:
    """A over non-empty rows and [AND | OR] columns from the definitions; inadmissible columns zero."""
    rows = np.arange(1, 1 << n)[:, None]
    sets = np.arange(1 << n)[None, :]
    and_ok, or_ok = (mask.numpy() for mask in admissible_masks(n, mode))
    return np.hstack([((rows & sets) == sets) * and_ok, ((rows & sets) != 0) * or_ok]).astype(float)


DENSE = SolverOptions(dense_min_n=1)  # the dense path at every n (the default starts at n = 9)


@pytest.mark.parametrize(("n", "seed"), [(7, 0), (8, 1), (8, 2), (9, 3)])
def test_dense_games_are_handed_to_the_interior_point_and_reach_the_lp_optimum(n, seed) -> None:
    values = dense_game(n, seed)
    result = extract_interactions(values, options=DENSE)
    assert result.extra["method"] == "dual-simplex+interior-point"
    optimum = dense_lp_optimum(values, 0.04)
    assert result.gap <= 1e-6
    assert result.dual_bound <= optimum * (1 + 1e-9)
    assert result.objective == pytest.approx(optimum, rel=1e-6)
    np.testing.assert_allclose(result.reconstruct(), result.values + result.q, atol=1e-9 * np.abs(values).max())
    assert np.abs(result.q).max() <= result.tau * (1 + 1e-7) + 1e-12


def test_the_dense_path_agrees_with_the_dual_simplex_alone() -> None:
    values = np.stack([dense_game(8, seed) for seed in (4, 5)])
    switched = extract_batch(values, options=DENSE)
    simplex_only = extract_batch(values, options=SolverOptions(dense_fraction=None))
    for a, b in zip(switched, simplex_only):
        assert a.extra["method"] == "dual-simplex+interior-point" and b.extra["method"] == "dual-simplex"
        assert b.extra["basis_size"] > 0.25 * (1 << 8)  # the simplex alone ends on a dense basis
        assert a.objective == pytest.approx(b.objective, rel=1e-6)


def test_sparse_games_of_a_batch_stay_with_the_dual_simplex() -> None:
    index = np.arange(1 << 8)
    sparse = 3.0 * ((index & 3) == 3) + 2.0 * ((index & 12) != 0) + np.random.default_rng(0).normal(0, 0.02, 1 << 8)
    results = extract_batch(np.stack([sparse, dense_game(8, 6)]), options=DENSE)
    assert [r.extra["method"] for r in results] == ["dual-simplex", "dual-simplex+interior-point"]
    assert all(r.gap <= 1e-6 for r in results)


def test_the_tensor_backend_hands_dense_games_back_too() -> None:
    values = np.stack([dense_game(7, 7), dense_game(7, 8)])
    options = replace(DENSE, simplex=simplex.SimplexOptions(backend="tensor"))
    for game, result in zip(values, extract_batch(values, options=options)):
        assert result.extra["method"] == "dual-simplex+interior-point"
        assert result.objective == pytest.approx(dense_lp_optimum(game, 0.04), rel=1e-6) and result.gap <= 1e-6


@pytest.mark.parametrize(("mode", "qthres"), [("and", 0.04), ("and-or", 0.0), ("and", 0.0)])
def test_interior_point_alone_in_every_mode(mode, qthres) -> None:
    """AND-only (no OR columns) and tau = 0 (equality rows, the slack dropped), solved directly."""
    n = 6
    values = dense_game(n, 9)
    scale = np.abs(values - values[0]).max()
    scaled = torch.tensor((values - values[0]) / scale)
    tau = qthres * abs(float(scaled[-1]))
    result = interior_point.solve(scaled, tau, *admissible_masks(n, mode))
    assert result.gap <= 1e-6
    assert result.primal * scale == pytest.approx(dense_lp_optimum(values, qthres, mode), rel=1e-6)


@pytest.mark.parametrize("n", [3, 6])
def test_normal_matrix_equals_the_explicit_product(n) -> None:
    """Both ways of filling A diag(d) A^T (the CPU loop's lower triangle and the gathers used on other
    devices) against the product of the explicit matrix."""
    rng = np.random.default_rng(n)
    d = rng.random(2 << n) * np.concatenate([admissible_masks(n, "and-or")[0], admissible_masks(n, "and-or")[1]])
    d_slack = rng.random((1 << n) - 1)
    a = explicit_matrix(n)
    expected = a @ np.diag(d) @ a.T + np.diag(d_slack)
    size = 1 << n
    args = (torch.tensor(d[:size]), torch.tensor(d[size:]), torch.tensor(d_slack), n)
    np.testing.assert_allclose(np.tril(interior_point._normal_matrix(*args).numpy()), np.tril(expected), atol=1e-12)
    np.testing.assert_allclose(interior_point._normal_matrix_gathered(*args).numpy(), expected, atol=1e-12)


def test_a_deadline_returns_an_honest_certificate() -> None:
    values = dense_game(8, 10)
    scale = np.abs(values - values[0]).max()
    scaled = torch.tensor((values - values[0]) / scale)
    options = interior_point.InteriorPointOptions(deadline=time.perf_counter())  # already passed
    result = interior_point.solve(scaled, 0.04 * abs(float(scaled[-1])), *admissible_masks(8, "and-or"), options)
    optimum = dense_lp_optimum(values, 0.04) / scale
    assert result.gap > 1e-6
    assert result.dual <= optimum * (1 + 1e-9) <= result.primal * (1 + 1e-9)


def _scaled(values: np.ndarray) -> tuple[torch.Tensor, float]:
    scaled = (values - values[0]) / np.abs(values - values[0]).max()
    return torch.tensor(scaled), 0.04 * abs(float(scaled[-1]))


def test_solve_many_on_two_threads_equals_one_game_at_a_time() -> None:
    seeds = (11, 12, 13)
    games = [_scaled(dense_game(7, seed)) for seed in seeds]
    masks = admissible_masks(7, "and-or")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        parallel = interior_point.solve_many(games, *masks)
        assert torch.get_num_threads() == 2  # the single-thread section gave the setting back
    finally:
        torch.set_num_threads(before)
    for seed, (values, tau), result in zip(seeds, games, parallel):
        alone = interior_point.solve(values, tau, *masks)
        raw = dense_game(7, seed)
        optimum = dense_lp_optimum(raw, 0.04) / np.abs(raw - raw[0]).max()
        for solved in (result, alone):
            assert solved.gap <= 1e-6 and solved.dual <= optimum * (1 + 1e-9)
            assert solved.primal == pytest.approx(optimum, rel=1e-6)


def test_single_thread_sections_nest_and_restore_once() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with interior_point._one_torch_thread():
            with interior_point._one_torch_thread():
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1  # the outer section is still open
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
