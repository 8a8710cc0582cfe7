"""Fast transforms against brute-force definitions (dense matrices written from science.md) and shapiq."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shapiq import ExactComputer

from auditor.engine import transforms as T

RNG = np.random.default_rng(12345)


def dense_subset_sum(n: int) -> np.ndarray:
    """Z[T, S] = 1 if S is a subset of T."""
    sets = np.arange(1 << n)
    return ((sets[:, None] & sets[None, :]) == sets[None, :]).astype(float)


def dense_mobius(n: int) -> np.ndarray:
    """M[S, L] = (-1)^{|S|-|L|} if L is a subset of S (Harsanyi dividend, literally)."""
    sets = np.arange(1 << n)
    subset = (sets[:, None] & sets[None, :]) == sets[None, :]
    parity = np.array([[(-1) ** (bin(s).count("1") - bin(l).count("1")) for l in sets] for s in sets])
    return subset * parity


def dense_or(n: int) -> np.ndarray:
    """I_or(S) = -sum_{L subset S} (-1)^{|S|-|L|} v(N \\ L), as a matrix acting on v."""
    full = (1 << n) - 1
    matrix = np.zeros((1 << n, 1 << n))
    mobius = dense_mobius(n)
    for s in range(1 << n):
        for l in range(1 << n):
            if mobius[s, l]:
                matrix[s, full ^ l] -= mobius[s, l]
    return matrix


@pytest.mark.parametrize("n", range(0, 9))
def test_fast_transforms_match_dense_definitions(n: int) -> None:
    x = RNG.normal(size=(3, 1 << n))
    tx = torch.tensor(x, dtype=torch.float64)
    zeta, mobius, orm = dense_subset_sum(n), dense_mobius(n), dense_or(n)
    cases = {
        "subset_sum": (T.subset_sum, zeta),
        "and_inverse": (T.and_inverse, zeta),
        "subset_mobius": (T.subset_mobius, mobius),
        "and_transform": (T.and_transform, mobius),
        "superset_sum": (T.superset_sum, zeta.T),
        "and_inverse_adjoint": (T.and_inverse_adjoint, zeta.T),
        "superset_mobius": (T.superset_mobius, mobius.T),
        "and_transform_adjoint": (T.and_transform_adjoint, mobius.T),
        "or_transform": (T.or_transform, orm),
        "or_inverse": (T.or_inverse, np.linalg.inv(orm)),
        "or_transform_adjoint": (T.or_transform_adjoint, orm.T),
        "or_inverse_adjoint": (T.or_inverse_adjoint, np.linalg.inv(orm).T),
    }
    for name, (fast, dense) in cases.items():
        np.testing.assert_allclose(fast(tx).numpy(), x @ dense.T, atol=1e-12, rtol=0, err_msg=name)


def test_or_terms_rebuild_the_game_by_intersection() -> None:
    """v(T) = v(empty) + sum over non-empty S meeting T of I_or(S): the OR half of universal matching."""
    n = 5
    v = RNG.normal(size=1 << n)
    i_or = T.or_transform(torch.tensor(v)).numpy()
    for t in range(1 << n):
        rebuilt = v[0] + sum(i_or[s] for s in range(1, 1 << n) if s & t)
        assert rebuilt == pytest.approx(v[t], abs=1e-12)


def test_transforms_keep_batch_shape_dtype_and_input() -> None:
    x = torch.randn(2, 3, 64, dtype=torch.float32)
    before = x.clone()
    out = T.and_transform(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(x, before), "transforms must not modify their input"
    np.testing.assert_allclose(T.and_inverse(out).numpy(), x.numpy(), atol=1e-5)


def test_length_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="2\\^n"):
        T.subset_sum(torch.zeros(6))


def _shapiq_game(values: np.ndarray, n: int):
    def game(coalitions: np.ndarray) -> np.ndarray:
        index = (coalitions.astype(np.int64) * (1 << np.arange(n))).sum(axis=1)
        return values[index]

    return game


@pytest.mark.parametrize("n", [3, 5, 7])
def test_and_transform_matches_shapiq_moebius(n: int) -> None:
    values = RNG.normal(size=1 << n)
    exact = ExactComputer(_shapiq_game(values, n), n_players=n)("Moebius", order=n)
    ours = T.and_transform(torch.tensor(values)).numpy()
    for coalition, position in exact.interaction_lookup.items():
        mask = sum(1 << i for i in coalition)
        assert ours[mask] == pytest.approx(exact.values[position], abs=1e-10), coalition


def test_popcounts() -> None:
    counts = T.popcounts(6).numpy()
    assert list(counts) == [bin(i).count("1") for i in range(64)]
