"""The joint AND-OR split of several games over the same players (Chen et al., ICLR 2024).

Both games are split together, each set of players penalised by the larger of its absolute values
across the games, so the models are pushed onto common terms: the terms salient in both joint splits
are the shared interactions of a cross-model comparison (``auditor.metrics.compare``). Solved exactly
with HiGHS through ``scipy.optimize.linprog``; its cost grows about 8^n, hence ``JOINT_MAX_PLAYERS``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

__all__ = ["admissible_sets", "DEFAULT_ALPHA", "JOINT_MAX_PLAYERS", "JointResult", "joint_extraction", "joint_objective"]

DEFAULT_ALPHA = 0.1
JOINT_MAX_PLAYERS = 12
"""The joint LP is solved exactly with a generic solver; its cost grows about 8^n (science.md s4)."""


@dataclass
class JointResult:
    """The joint split: per model AND and OR terms (length 2^n, binary order) and the optimum."""

    n: int
    alpha: float
    and_terms: list[np.ndarray]
    or_terms: list[np.ndarray]
    q: list[np.ndarray]
    taus: list[float]
    objective: float
    lp_objective: float
    seconds: float
    iterations: int


def admissible_sets(n: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    sets = np.arange(1, 1 << n)
    and_sets = sets
    if mode == "and":
        or_sets = np.zeros(0, dtype=np.int64)
    else:
        or_sets = sets[(sets & (sets - 1)) != 0]  # order >= 2: order-1 OR is merged into AND
    return and_sets, or_sets


def joint_objective(and_terms: Sequence[np.ndarray], or_terms: Sequence[np.ndarray], alpha: float = DEFAULT_ALPHA) -> float:
    """sum over kinds and sets S of (1 - alpha) max_i |I_i(S)| + alpha sum_i |I_i(S)|."""
    total = 0.0
    for vectors in (and_terms, or_terms):
        stacked = np.abs(np.stack([np.asarray(v, dtype=np.float64) for v in vectors]))
        total += (1 - alpha) * float(stacked.max(axis=0).sum()) + alpha * float(stacked.sum())
    return total


def _incidence(n: int, mode: str) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
    """One model's constraint columns over its 2^n - 1 matching rows and its sigma row.

    Column c (AND sets first, then OR sets) holds the coefficients of the term I(c): +1 in the
    matching row of every T containing an AND set; for an OR set, -1 in the row of every T inside
    N \\ S's complement (S & T == 0) and -1 in the sigma row.
    """
    size = 1 << n
    and_sets, or_sets = admissible_sets(n, mode)
    rows_t = np.arange(1, size)
    n_rows, n_and = size - 1, len(and_sets)
    t_idx, s_idx = np.nonzero((rows_t[:, None] & and_sets[None, :]) == and_sets[None, :])
    rows, cols, vals = [t_idx], [s_idx], [np.ones(len(t_idx))]
    if len(or_sets):
        t_idx, s_idx = np.nonzero((rows_t[:, None] & or_sets[None, :]) == 0)
        rows += [t_idx, np.full(len(or_sets), n_rows)]
        cols += [n_and + s_idx, n_and + np.arange(len(or_sets))]
        vals += [-np.ones(len(t_idx)), -np.ones(len(or_sets))]
    matrix = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(n_rows + 1, n_and + len(or_sets)))
    return matrix, and_sets, or_sets


def _joint_lp(block: sp.csc_matrix, games: Sequence[np.ndarray], taus: Sequence[float], alpha: float) -> Any:
    """Build and solve the joint LP of :func:`joint_extraction` (variables per model: p, n, q, sigma; then m)."""
    models, k = len(games), block.shape[1]
    n_rows = block.shape[0] - 1
    q_part = sp.vstack([-sp.identity(n_rows, format="csc"), sp.csc_matrix((1, n_rows))], format="csc")
    sigma_part = sp.csc_matrix(np.ones((n_rows + 1, 1)))
    model_block = sp.hstack([block, -block, q_part, sigma_part], format="csc")
    width = model_block.shape[1]
    a_eq = sp.hstack([sp.block_diag([model_block] * models, format="csc"),
                      sp.csc_matrix((models * (n_rows + 1), k))], format="csc")
    b_eq = np.concatenate([np.concatenate([g[1:], [0.0]]) for g in games])
    eye = sp.identity(k, format="csc")
    ub_blocks = []  # p_i + n_i - m <= 0 for every model i and column
    for i in range(models):
        left = [sp.csc_matrix((k, width))] * models
        left[i] = sp.hstack([eye, eye, sp.csc_matrix((k, n_rows + 1))], format="csc")
        ub_blocks.append(sp.hstack([*left, -eye], format="csc"))
    a_ub = sp.vstack(ub_blocks, format="csc")
    cost = np.concatenate([np.concatenate([np.full(2 * k, alpha), np.zeros(n_rows + 1)])] * models
                          + [np.full(k, 1.0 - alpha)])
    lower, upper = [], []
    for tau in taus:
        lower += [np.zeros(2 * k), np.full(n_rows, -tau), [-np.inf]]
        upper += [np.full(2 * k, np.inf), np.full(n_rows, tau), [np.inf]]
    lower.append(np.zeros(k))
    upper.append(np.full(k, np.inf))
    bounds = np.stack([np.concatenate(lower), np.concatenate(upper)], axis=1)
    return linprog(cost, A_ub=a_ub, b_ub=np.zeros(models * k), A_eq=a_eq, b_eq=b_eq, bounds=bounds,
                   method="highs-ipm")


def joint_extraction(
    values: Sequence[np.ndarray],
    qthres: float = 0.04,
    alpha: float = DEFAULT_ALPHA,
    *,
    mode: str = "and-or",
    taus: Sequence[float] | None = None,
) -> JointResult:
    """The joint AND-OR split of several games on the same players (Chen et al., ICLR 2024).

    The linear program. For models i = 1..M with games v_i (v_i(empty) = 0, length 2^n), let C be the
    admissible columns: AND sets S != empty, and OR sets with |S| >= 2 (order-1 OR is merged into
    AND). Variables, for every model i and column c: p_i(c), n_i(c) >= 0 (the term is
    I_i(c) = p_i(c) - n_i(c), its absolute value at the optimum p_i(c) + n_i(c)); the corrections
    q_i(T) in [-tau_i, tau_i] for T != empty, tau_i = qthres |v_i(N)|; one free sum sigma_i of the
    OR terms; and for every column c one shared m(c) >= 0 (the largest absolute value over models).

        minimise   (1 - alpha) sum_c m(c) + alpha sum_i sum_c (p_i(c) + n_i(c))
        subject to, for every model i and every T != empty (universal matching with correction):
                   sum_{S in AND, S subset T} I_i(S) + sigma_i - sum_{S in OR, S subset N \\ T} I_i(S)
                       - q_i(T) = v_i(T)
                   sigma_i - sum_{S in OR} I_i(S) = 0
                   p_i(c) + n_i(c) - m(c) <= 0                      for every model i and column c

    i.e. sum_S (1 - alpha) max_i |I_i(S)| + alpha sum_i |I_i(S)| over AND and OR terms, each model's
    split constrained exactly as in ``auditor.engine.extraction`` (|q_i| <= tau_i). The OR part uses
    (W b)(T) = sum_{S meets T} b(S) = sum(b) - sum_{S subset N \\ T} b(S), so the equality block has
    O(3^n) non-zeros per model instead of O(4^n) (science.md s4). Values are scaled by one common
    factor (the largest |v_i(T)|) and scaled back; a common factor keeps the max comparable.

    Size and solver. M (2 |C| + 2^n) + |C| variables, M 2^n equality rows and M |C| inequality rows,
    |C| = 2^(n+1) - n - 2: at n = 10 and M = 2 about 14,000 variables, 6,100 rows and 250,000
    non-zeros. The matrices are built sparse and solved by HiGHS' interior-point method with
    crossover (``scipy.optimize.linprog(method="highs-ipm")``): on games of overfitted models the
    optimum has a dense support (over a thousand terms at n = 10), which defeats column generation
    and makes the dual simplex slow; the IPM takes about 0.5 s at n = 8 and 15 s at n = 10 on a
    loaded CPU. ``status == 0`` (optimal) is required, else RuntimeError.

    With alpha = 1 the m(c) carry no cost and the problem separates: the optimum is the sum of the
    models' separate optima. Any tuple of separate optima is feasible here, so the joint optimum is
    at most the joint objective evaluated at the separate optima.
    """
    started = time.perf_counter()
    games = [np.asarray(v, dtype=np.float64) - float(np.asarray(v, dtype=np.float64)[0]) for v in values]
    if not games:
        raise ValueError("joint_extraction needs at least one game")
    size = len(games[0])
    n = size.bit_length() - 1
    if size != 1 << n or any(len(g) != size for g in games):
        raise ValueError("all games must have the same length 2^n")
    if n < 1:
        raise ValueError("a game needs at least one player")
    if n > JOINT_MAX_PLAYERS:
        raise ValueError(f"the joint LP is limited to n <= {JOINT_MAX_PLAYERS} players (got {n})")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    if taus is None:
        taus = [qthres * abs(float(g[-1])) for g in games]
    scale = max(float(np.abs(g).max()) for g in games) or 1.0
    scaled = [g / scale for g in games]
    scaled_taus = [float(t) / scale for t in taus]

    block, and_sets, or_sets = _incidence(n, mode)
    n_and, k = len(and_sets), block.shape[1]
    result = _joint_lp(block, scaled, scaled_taus, alpha)
    if result.status != 0:
        raise RuntimeError(f"the joint LP did not solve: {result.message}")
    x = result.x
    width = 2 * k + (size - 1) + 1
    and_terms, or_terms, qs = [], [], []
    for i in range(len(games)):
        off = i * width
        terms = (x[off:off + k] - x[off + k:off + 2 * k]) * scale
        a = np.zeros(size)
        a[and_sets] = terms[:n_and]
        o = np.zeros(size)
        o[or_sets] = terms[n_and:]
        q = np.zeros(size)
        q[1:] = x[off + 2 * k:off + 2 * k + size - 1] * scale
        and_terms.append(a)
        or_terms.append(o)
        qs.append(q)
    return JointResult(
        n=n, alpha=alpha, and_terms=and_terms, or_terms=or_terms, q=qs, taus=[float(t) for t in taus],
        objective=joint_objective(and_terms, or_terms, alpha), lp_objective=float(result.fun) * scale,
        seconds=time.perf_counter() - started, iterations=int(getattr(result, "nit", 0) or 0),
    )
