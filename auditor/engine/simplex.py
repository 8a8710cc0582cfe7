"""A dual simplex for the AND-OR split LP with implicit slacks and fast-transform pricing.

The LP (see ``auditor.engine.extraction``): columns are the AND sets (non-empty) and the OR sets (order >= 2),
each a free variable x_j with cost |x_j|; rows are the non-empty states T with a box
``lo_T <= (A x)_T <= hi_T``, ``A = [Z | W]``. Its dual is ``max v.y - tau ||y||_1`` subject to
``|A^T y| <= 1``.

Why a dual simplex, and why this one. The optimum of a game with structure is sparse: tens of
non-zero terms resting on as many tight rows, out of 2^n rows and ~2^(n+1) columns. A simplex basis
of the full LP has 2^n members, but all except k of them are the slacks of rows that are not tight,
so only the k x k block ``A[R, C]`` (tight rows R, basic columns C) and its inverse are kept; the
2^n - k basic slacks are handled implicitly. Starting from x = 0, y = 0 (dual feasible, since
|A^T 0| <= 1), each iteration
  1. prices the primal infeasibility of every row with the fast transform ``r = A x`` (O(n 2^n))
     and chooses the leaving row or column by dual steepest edge among the 32 most infeasible
     rows and the infeasible basic columns (measured: fewer pivots than steepest edge over all
     rows, which on some games prefers rows of small weight and small infeasibility and let k
     grow to 20 times the optimum's support);
  2. computes the pivot row ``A^T dy`` for all ~2^(n+1) columns with two more transforms;
  3. runs a two-pass (Harris) ratio test over the non-basic columns and the tight rows' duals
     (a bound-flipping ratio test was tried: fewer pivots on dense games, more on sparse ones,
     no faster on either);
  4. updates the k x k inverse with a bordered or Sherman-Morrison formula in O(k^2), and
     refactorises it every max(``refactor_every``, k) pivots (O(k^2) amortised).
An iteration costs O(n 2^n + k^2), against a sparse LU update over the whole LP in a general
solver. Measured at n = 10 on LM-like games: 200-700 pivots where HiGHS' dual simplex needs
1,500-7,500 on the full LP (bench/README.md). The expensive case is a game whose optimum is dense
(tau small next to the noise, e.g. v(N) close to v(empty)): k approaches 2^n, pivots grow to ~11 k
and each costs O(k^2) (lm seed 207 at n = 10: 10,135 pivots to k = 919, 12 s, ~1.8 ms per pivot at
k ~ 900, twice HiGHS). With ``max_basis`` set (``auditor.engine.extraction`` sets 2^n / 4 for 9 <= n <= 12)
such a game is handed back as ``dense`` when its basis passes that size, and solved by
``auditor.engine.interior_point`` instead (~0.3 s of CPU at n = 10).

Two implementations of these steps, one job each: ``simplex_cpu`` (numba-compiled scalar
loops, games in parallel on as many threads as torch uses: the fastest on a CPU, where operations
on tensors this small cost microseconds of dispatch each) and ``simplex_tensor`` (every step a tensor operation over
a batch of games in lockstep: the CUDA path, where a kernel launch costs the same for one game or
thousands).

Convergence and degeneracy. Ties in the ratio test are the rule here (at the start every column
that meets the leaving row has the same ratio), so the costs are perturbed by at most
``perturbation`` (relative), growing with the order: ties break deterministically, towards the
low-order terms the theory expects. The perturbation only steers the path: the result is certified
by the caller on the true costs, with the dual vector also recomputed from the final basis with the
true costs (when that basis is optimal for both, the gap is at rounding level). A game that hits
the iteration or time limit, or breaks down numerically, comes back with ``converged`` False and
its basis, so the caller can finish it by other means; nothing is reported optimal without proof.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from auditor.engine.certificate import admissible_masks
from auditor.engine.simplex_types import SimplexOptions, SimplexResult

__all__ = ["SimplexOptions", "SimplexResult", "admissible_columns", "column_costs", "solve", "warm_up"]


def admissible_columns(n: int, mode: str) -> np.ndarray:
    """(2^(n+1),) bool over [AND | OR]: non-empty AND sets; OR sets of order >= 2 (none for "and")."""
    return torch.cat(admissible_masks(n, mode)).numpy()


def column_costs(n: int, perturbation: float) -> np.ndarray:
    """1 + a deterministic perturbation of at most ``perturbation``, growing with the order."""
    size = 1 << n
    index = np.arange(2 * size) % size
    order = np.zeros(2 * size)
    for i in range(n):
        order += (index >> i) & 1
    jitter = np.random.default_rng(0x5EED).random(2 * size)
    return 1.0 + perturbation * (order + 0.5 * jitter) / (n + 0.5 if n else 1.0)


def solve(
    values: torch.Tensor,
    tau: torch.Tensor,
    allowed: np.ndarray,
    options: SimplexOptions | None = None,
) -> SimplexResult:
    """Solve ``min ||x||_1 s.t. |A x - v| <= tau`` on rows T != empty, for a batch of scaled games.

    ``values`` (B, 2^n) float64 with v(empty) = 0 and ``tau`` (B,). With the default backend, games
    on CUDA are solved there by the tensor implementation, others by the compiled CPU kernel.
    """
    options = options or SimplexOptions()
    size = values.shape[-1]
    n = size.bit_length() - 1
    costs = column_costs(n, options.perturbation)
    backend = options.backend
    if backend == "auto":
        backend = "tensor" if values.device.type == "cuda" else "compiled"
    if backend == "tensor":
        from auditor.engine import simplex_tensor

        return simplex_tensor.solve(values, tau, torch.as_tensor(allowed, device=values.device),
                                         torch.as_tensor(costs, device=values.device), options)
    return _solve_cpu(values.cpu().numpy(), tau.cpu().numpy(), allowed, costs, options)


def _solve_cpu(values: np.ndarray, taus: np.ndarray, allowed: np.ndarray, costs: np.ndarray,
               options: SimplexOptions) -> SimplexResult:
    from auditor.engine import simplex_cpu as kernel

    batch, size = values.shape
    values = np.ascontiguousarray(values, dtype=np.float64)
    allowed = np.ascontiguousarray(allowed, dtype=np.bool_)
    x = np.zeros((batch, 2 * size))
    y = np.zeros((batch, size))
    y_perturbed = np.zeros((batch, size))
    basis = np.zeros((batch, 2 * size), dtype=np.int64)
    outcome = np.zeros((batch, 3), dtype=np.int64)  # status, iterations, k
    stop = np.zeros(1, dtype=np.int64)
    candidates = min(options.pricing_candidates, size - 1)
    max_iterations = options.max_iterations or 20 * size
    max_basis = size if options.max_basis is None else options.max_basis

    def run(b: int) -> None:
        outcome[b] = kernel.solve_one(
            values[b], float(taus[b]), allowed, costs, options.primal_tolerance, options.dual_tolerance,
            options.pivot_tolerance, candidates, options.refactor_every, max_iterations, max_basis, stop, x[b], y[b],
            y_perturbed[b], basis[b],
        )

    timer = None
    if options.time_limit is not None:
        timer = threading.Timer(options.time_limit, lambda: stop.__setitem__(0, 1))
        timer.daemon = True
        timer.start()
    threads = max(1, min(torch.get_num_threads(), batch))
    try:
        if threads == 1:
            for b in range(batch):
                run(b)
        else:
            with ThreadPoolExecutor(threads, thread_name_prefix="dual-simplex") as pool:
                list(pool.map(run, range(batch)))
    finally:
        if timer is not None:
            timer.cancel()
    k = outcome[:, 2]
    return SimplexResult(
        and_terms=x[:, :size],
        or_terms=x[:, size:],
        duals=y,
        perturbed_duals=y_perturbed,
        iterations=outcome[:, 1],
        converged=outcome[:, 0] == kernel.CONVERGED,
        dense=outcome[:, 0] == kernel.DENSE,
        basis_rows=[basis[b, : k[b]].tolist() for b in range(batch)],
        basis_columns=[basis[b, k[b] : 2 * k[b]].tolist() for b in range(batch)],
    )


def warm_up() -> None:
    """Compile (or load from numba's cache) the CPU kernel now, not inside the first audit's budget,
    and the interior-point method's loop that dense games are handed to (``auditor.engine.extraction``)."""
    from auditor.engine import interior_point

    interior_point.warm_up()
    values = torch.tensor([[0.0, 1.0, 0.5, 2.0]], dtype=torch.float64)
    solve(values, torch.tensor([0.04 * 2.0], dtype=torch.float64), admissible_columns(2, "and-or"))
