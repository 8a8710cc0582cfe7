"""auditor.engine.exact against shapiq's ExactComputer and against the textbook definitions.

Oracles: shapiq 1.4.1 on shapiq-style benchmark games (tests/engine/shapiq_fixtures.py) at
n = 4..10, and each index's own definition written out below from v (discrete derivatives, sums
over permutations and subsets, a constrained least squares), independent of the Möbius route the
library takes. Tolerance: 1e-12 relative to max |v| (float64), except where noted.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from auditor.engine import exact
from shapiq_fixtures import as_vector, games, mask_of, shapiq_index, soum

TOL = 1e-12


def assert_exact(ours, expected, values, tol: float = TOL) -> None:
    np.testing.assert_allclose(ours, expected, rtol=0, atol=tol * max(1.0, float(np.abs(values).max())))


def size(mask: int) -> int:
    return int(mask).bit_count()


def subsets(mask: int):
    """All subsets of a mask (including the empty set and the mask itself)."""
    sub = mask
    while True:
        yield sub
        if sub == 0:
            return
        sub = (sub - 1) & mask


# --- textbook definitions, written from v ------------------------------------------------------


def derivative(v: np.ndarray, s: int, t: int) -> float:
    """Discrete derivative Delta_S v(T) = sum over L subset S of (-1)^{|S|-|L|} v(T + L), T disjoint from S."""
    return sum((-1) ** (size(s) - size(low)) * v[t | low] for low in subsets(s))


def brute_moebius(v: np.ndarray, n: int) -> np.ndarray:
    return np.array([derivative(v, s, 0) for s in range(1 << n)])


def brute_shapley(v: np.ndarray, n: int) -> np.ndarray:
    """Average marginal contribution over all n! orders of arrival."""
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        present = 0
        for player in order:
            phi[player] += v[present | (1 << player)] - v[present]
            present |= 1 << player
    return phi / math.factorial(n)


def brute_banzhaf(v: np.ndarray, n: int) -> np.ndarray:
    full = (1 << n) - 1
    return np.array([sum(v[t | 1 << i] - v[t] for t in subsets(full & ~(1 << i))) / 2 ** (n - 1) for i in range(n)])


def brute_sii(v: np.ndarray, n: int, order: int) -> np.ndarray:
    full, out = (1 << n) - 1, np.zeros(1 << n)
    for s in range(1 << n):
        if size(s) <= order:
            k = size(s)
            out[s] = sum(math.factorial(n - size(t) - k) * math.factorial(size(t)) / math.factorial(n - k + 1)
                         * derivative(v, s, t) for t in subsets(full & ~s))
    return out


def brute_bii(v: np.ndarray, n: int, order: int) -> np.ndarray:
    full, out = (1 << n) - 1, np.zeros(1 << n)
    for s in range(1 << n):
        if size(s) <= order:
            out[s] = sum(derivative(v, s, t) for t in subsets(full & ~s)) / 2 ** (n - size(s))
    return out


def brute_stii(v: np.ndarray, n: int, order: int) -> np.ndarray:
    full, out = (1 << n) - 1, np.zeros(1 << n)
    for s in range(1 << n):
        if size(s) < order:
            out[s] = derivative(v, s, 0)
        elif size(s) == order:
            out[s] = order / n * sum(derivative(v, s, t) / math.comb(n - 1, size(t)) for t in subsets(full & ~s))
    return out


def brute_fsii(v: np.ndarray, n: int, order: int) -> np.ndarray:
    """argmin of the Shapley-kernel-weighted squared error of sum_{S subset T, |S| <= k} E(S) over
    0 < |T| < n, subject to exactness at the empty set and N (Tsai et al. 2023), via its KKT system."""
    sets = [s for s in range(1 << n) if size(s) <= order]
    design = np.array([[float(s & t == s) for s in sets] for t in range(1 << n)])
    inner = [t for t in range(1 << n) if 0 < size(t) < n]
    kernel = np.array([(n - 1) / (math.comb(n, size(t)) * size(t) * (n - size(t))) for t in inner])
    a, c = design[inner], design[[0, (1 << n) - 1]]
    system = np.block([[2 * a.T @ (kernel[:, None] * a), c.T], [c, np.zeros((2, 2))]])
    rhs = np.concatenate([2 * a.T @ (kernel * v[inner]), v[[0, (1 << n) - 1]]])
    out = np.zeros(1 << n)
    out[sets] = np.linalg.solve(system, rhs)[: len(sets)]
    return out


def brute_or_terms(v: np.ndarray, n: int) -> np.ndarray:
    """science.md: I_or(S) = -sum_{L subset S} (-1)^{|S|-|L|} v(N \\ L)."""
    full = (1 << n) - 1
    return np.array([-sum((-1) ** (size(s) - size(low)) * v[full & ~low] for low in subsets(s))
                     for s in range(1 << n)])


# --- against shapiq's ExactComputer -------------------------------------------------------------

SHAPIQ_CASES = [(n, name) for n in (4, 6, 8, 10) for name in ("soum-low", "soum-high", "dummy", "random")]


@pytest.mark.parametrize(("n", "game"), SHAPIQ_CASES)
def test_transforms_and_values_match_shapiq(n: int, game: str) -> None:
    v = games(n)[game]
    for index, order in (("Moebius", None), ("Co-Moebius", None), ("SV", 1), ("BV", 1)):
        expected, present = as_vector(shapiq_index(v, index, order), n)
        ours = exact.interaction_index(v, index, order=order)
        assert present.sum() == (1 << n if order is None else n + 1)
        assert_exact(ours, expected, v)
    singletons = [1 << i for i in range(n)]
    assert_exact(exact.shapley_values(v), as_vector(shapiq_index(v, "SV", 1), n)[0][singletons], v)
    assert_exact(exact.banzhaf_values(v), as_vector(shapiq_index(v, "BV", 1), n)[0][singletons], v)


@pytest.mark.parametrize(("n", "game"), SHAPIQ_CASES)
@pytest.mark.parametrize("index", ["SII", "BII", "STII"])
def test_interaction_indices_match_shapiq(n: int, game: str, index: str) -> None:
    v = games(n)[game]
    for order in (2, 3) if n <= 8 else (2,):
        expected, present = as_vector(shapiq_index(v, index, order), n)
        ours = exact.interaction_index(v, index, order=order)
        assert_exact(ours, expected, v)
        assert not ours[~present].any(), "nothing above the order"


@pytest.mark.parametrize(("n", "game"), SHAPIQ_CASES)
def test_faithful_shapley_matches_shapiq_to_its_penalty(n: int, game: str) -> None:
    """shapiq solves FSII as a least squares with a 1e8 penalty for its two constraints, so it is
    itself only accurate to ~1e-8: compared at 1e-6 here, and to 1e-10 against the exact
    constrained least squares below (test_indices_match_their_definitions)."""
    v = games(n)[game]
    for order in (1, 2, 3):
        expected, _ = as_vector(shapiq_index(v, "FSII", order), n)
        assert_exact(exact.faithful_shapley_index(v, order=order), expected, v, tol=1e-6)


def test_soum_moebius_is_its_coefficients_and_shapley_shares_them() -> None:
    n = 10
    v, coefficients = soum(n, seed=3, terms=30)
    expected = np.zeros(1 << n)
    for mask, coefficient in coefficients.items():
        expected[mask] = coefficient
    assert_exact(exact.moebius_transform(v), expected, v)
    phi = np.zeros(n)
    for mask, coefficient in coefficients.items():
        members = [i for i in range(n) if mask >> i & 1]
        phi[members] += coefficient / len(members)
    assert_exact(exact.shapley_values(v), phi, v)


@pytest.mark.parametrize("n", [5, 9])
def test_a_dummy_player_gets_nothing_from_any_index(n: int) -> None:
    dummy = n // 2
    v = games(n)["dummy"]
    with_dummy = np.array([mask >> dummy & 1 for mask in range(1 << n)], dtype=bool)
    assert abs(exact.shapley_values(v)[dummy]) < TOL and abs(exact.banzhaf_values(v)[dummy]) < TOL
    for index in ("Moebius", "SII", "BII", "STII", "FSII"):
        values = exact.interaction_index(v, index, order=3)
        assert np.abs(values[with_dummy]).max() < 1e-11, index


# --- against the definitions ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_indices_match_their_definitions(n: int) -> None:
    v = np.random.default_rng(40 + n).normal(size=1 << n) * 2.0 + 1.0
    assert_exact(exact.moebius_transform(v), brute_moebius(v, n), v)
    assert_exact(exact.shapley_values(v), brute_shapley(v, n), v)
    assert_exact(exact.banzhaf_values(v), brute_banzhaf(v, n), v)
    assert_exact(exact.comoebius_transform(v), brute_or_terms(v, n), v)
    for order in range(1, n + 1):
        assert_exact(exact.shapley_interaction_index(v, order=order), brute_sii(v, n, order), v)
        assert_exact(exact.banzhaf_interaction_index(v, order=order), brute_bii(v, n, order), v)
        assert_exact(exact.shapley_taylor_index(v, order=order), brute_stii(v, n, order), v)
        assert_exact(exact.faithful_shapley_index(v, order=order), brute_fsii(v, n, order), v, tol=1e-10)


def test_or_terms_are_shapiq_co_moebius_up_to_a_sign_per_order() -> None:
    n = 7
    v = games(n)["random"]
    signs = np.array([(-1) ** (size(s) + 1) for s in range(1 << n)])
    shapiq_convention = exact.comoebius_transform(v, convention="shapiq")
    assert_exact(shapiq_convention, signs * exact.comoebius_transform(v), v)
    expected, _ = as_vector(shapiq_index(v, "Co-Moebius", None), n)
    assert_exact(shapiq_convention[1:], expected[1:], v)  # shapiq puts v(empty) at the empty set


# --- round trips, efficiency, consistency --------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 3, 8])
def test_inverses_undo_the_transforms(n: int) -> None:
    v = np.random.default_rng(n).normal(size=(3, 1 << n)) * 10
    assert_exact(exact.inverse_moebius_transform(exact.moebius_transform(v)), v, v)
    for convention in ("or", "shapiq"):
        terms = exact.comoebius_transform(v, convention=convention)
        assert_exact(exact.inverse_comoebius_transform(terms, convention=convention), v, v)


@pytest.mark.parametrize("n", [2, 6, 10, 14])
def test_efficiency(n: int) -> None:
    v = np.random.default_rng(n).normal(size=1 << n) * 100 + 7
    total = v[-1] - v[0]
    scale = max(1.0, np.abs(v).max())
    assert abs(exact.shapley_values(v).sum() - total) <= TOL * scale
    for order in {1, 2, min(3, n)}:
        for index in (exact.shapley_taylor_index, exact.faithful_shapley_index):
            values = index(v, order=order)
            assert abs(values[1:].sum() - total) <= TOL * scale, index.__name__


def test_order_one_entries_are_the_values() -> None:
    v = games(8)["soum-high"]
    singletons = [1 << i for i in range(8)]
    assert_exact(exact.shapley_interaction_index(v, order=3)[singletons], exact.shapley_values(v), v)
    assert_exact(exact.banzhaf_interaction_index(v, order=2)[singletons], exact.banzhaf_values(v), v)
    assert_exact(exact.moebius_transform(v, order=2), np.where([size(s) <= 2 for s in range(256)],
                                                               exact.moebius_transform(v), 0.0), v)


# --- inputs and outputs ----------------------------------------------------------------------------


def test_numpy_torch_lists_and_float32_all_give_float64() -> None:
    v = np.random.default_rng(1).normal(size=16)
    expected = exact.moebius_transform(v)
    from_float32 = exact.moebius_transform(v.astype(np.float32))
    assert isinstance(from_float32, np.ndarray) and from_float32.dtype == np.float64
    from_list = exact.shapley_values(v.tolist())
    assert isinstance(from_list, np.ndarray) and from_list.dtype == np.float64
    tensor = exact.moebius_transform(torch.tensor(v, dtype=torch.float32))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float64
    np.testing.assert_allclose(tensor.numpy(), expected, atol=1e-5)  # the input itself was rounded to float32
    assert exact.shapley_values(torch.tensor(v)).dtype == torch.float64
    assert exact.moebius_transform(v, dtype=np.float32).dtype == np.float32
    assert exact.moebius_transform(torch.tensor(v), dtype=torch.float32).dtype == torch.float32
    assert exact.moebius_transform(v, dtype=torch.float32).dtype == np.float32
    assert not np.shares_memory(exact.inverse_moebius_transform(v), v)


def test_batches_equal_one_game_at_a_time() -> None:
    batch = np.random.default_rng(2).normal(size=(2, 3, 64))
    for function in (exact.shapley_values, exact.banzhaf_values, exact.shapley_interaction_index,
                     exact.faithful_shapley_index, exact.moebius_transform):
        together = function(batch)
        for i, j in itertools.product(range(2), range(3)):
            np.testing.assert_allclose(together[i, j], function(batch[i, j]), rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: exact.moebius_transform(np.zeros(6)), "length 2^n"),
        (lambda: exact.shapley_values(3.0), "scalar"),
        (lambda: exact.shapley_interaction_index(np.zeros(8), order=4), "order must be an integer between 1 and n = 3"),
        (lambda: exact.shapley_taylor_index(np.zeros(8), order=0), "order must be"),
        (lambda: exact.interaction_index(np.zeros(8), "XYZ"), "index must be one of"),
        (lambda: exact.interaction_index(np.zeros(8), "SV", order=2), "SV is a value"),
        (lambda: exact.comoebius_transform(np.zeros(8), convention="dual"), "convention"),
    ],
)
def test_bad_input_raises_a_clear_value_error(call, message) -> None:
    with pytest.raises(ValueError, match=message.replace("^", r"\^")):
        call()


def test_index_names_are_shapiq_names_in_any_case() -> None:
    v = games(5)["random"]
    assert exact.canonical_index("moebius") == "Moebius" and exact.canonical_index("co-moebius") == "Co-Moebius"
    np.testing.assert_array_equal(exact.interaction_index(v, "fsii", order=2), exact.faithful_shapley_index(v, order=2))
    assert mask_of((0, 2)) == 5
