"""A primal-dual interior-point method for AND-OR split LPs whose optimum is dense.

Why a second method. ``auditor.engine.simplex`` is fast when the optimum rests on few tight rows (k
of the 2^n): a pivot costs O(n 2^n + k^2). When tau is small next to the game's noise (v(N) close
to v(empty)), the optimum fits the noise and k approaches 2^n: at n = 10, lm seed 207 ends at
k = 919 after 10,135 pivots (~12 s, twice HiGHS). An interior-point method does not care how many
rows end up tight: it costs 13-20 Newton steps, each one Cholesky factorisation of the
(2^n - 1)-square normal matrix (~12 ms of CPU at n = 10 with MKL on one thread), so the solver
switches to it once the simplex basis passes a fraction of 2^n (``auditor.engine.extraction``). Measured at
n = 10: the dense lm games in 13-14 iterations, ~0.27 s of CPU each (about 60% of it Cholesky).

The normal matrix without the O(4^n) constraint matrix. With column weights d (AND part d_a, OR
part d_b) it is

    (A D A^T)[T, U] = Sa(T & U) + sum(d_b) - Sb(~T) - Sb(~U) + Sb(~(T | U)),

Sa, Sb the subset sums of d_a, d_b (``[S subset T][S subset U] = [S subset T & U]`` and ``[S meets
T] = 1 - [S subset ~T]``), so it is filled by gathers from O(n 2^n) transforms, and every product
with A or A^T is a fast transform too (compiled loops on the CPU, torch butterflies elsewhere).

The LP in the form solved. Variables p, m >= 0 on the admissible columns (x = p - m, cost
sum(p + m)) and a row slack s in [0, 2 tau] (the residual is lo + s); constraints
``A (p - m) - s = lo`` on the non-empty rows. Mehrotra's predictor-corrector with one step length
per side, from p = m = 0.01 and y = 0 (dual feasible), plus up to two Gondzio centrality correctors
per iteration, which reuse the factor (measured on the 14 dense games of the lm batch of 256: 172
iterations in all against 233 without, 3.9 s of CPU against 4.4 s). Every Newton system is solved
by the Cholesky factor plus iterative refinement on the primal residual while it keeps decreasing
and is not yet small next to the infeasibility the step removes (at most ``refinement_steps``).
Without it the primal residual stalls near 1e-8, which the certificate's repair multiplies by up to
2^k: with two fixed steps the i.i.d. game at n = 10, seed 1 stalled at a certified gap of 1.04e-6.

Judged by ``auditor.engine.certificate`` at every iteration once the complementarity is below 1e-3 of the
objective, and at the end: the method stops as soon as its point is certified to ``tol`` (relative
gap), or when the certified gap stops improving (numerical limit), and returns the best certified
point either way, so the caller knows whether it is done.

The point is interior, and that changes which optimum is reported. The dense games' optima are not
unique: the interior point lies near the centre of the optimal face, the dual simplex at a vertex
chosen by its cost perturbation (towards low orders). Both are certified optimal, but the interior
point carries ~1,200-1,500 non-zero terms (390-970 above 1e-6 of the largest) and more salient ones:
measured on lm seeds 134, 176, 156, 207, 306 at n = 10, 19, 27, 20, 16, 28 terms >= 5% of the largest
against the vertex's 16, 16, 15, 19, 19, unchanged when run to a gap of 1e-8 (so not an accuracy
effect). Solving with the simplex's perturbed costs and to a gap of ~5e-8 brought seeds 134 and 176 to
15 and 14 (a prototype, not built: 2-5 more iterations per game). Everything is torch in float64,
so it runs on the games' device.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numba as nb
import numpy as np
import torch

from auditor.engine.certificate import apply_or, certify
from auditor.engine.transforms import subset_sum, superset_sum

__all__ = ["InteriorPointOptions", "InteriorPointResult", "solve", "solve_many", "warm_up"]


@dataclass(frozen=True)
class InteriorPointOptions:
    tol: float = 1e-6  # certified relative gap at which to stop (the solver passes its own)
    max_iterations: int = 80
    refinement_steps: int = 8  # at most; iterative refinement of each Newton solve (primal residual)
    step_fraction: float = 0.995  # of the largest step to the boundary
    stall_iterations: int = 4  # stop after this many iterations without a better certified gap
    centrality_correctors: int = 2  # Gondzio correctors per iteration (each: solves, no factorisation)
    corrector_reach: float = 0.3  # how much longer a step each corrector aims for
    deadline: float | None = None  # time.perf_counter() value after which the best point is returned


@dataclass
class InteriorPointResult:
    and_terms: torch.Tensor  # (2^n,) certified (exactly feasible) primal point, scaled units
    or_terms: torch.Tensor
    duals: torch.Tensor  # (2^n,) the dual point whose scaled bound is ``dual``
    primal: float
    dual: float
    iterations: int

    @property
    def gap(self) -> float:
        return max(self.primal - self.dual, 0.0) / self.primal if self.primal > 0 else 0.0


@lru_cache(maxsize=4)
def _pair_indices(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """T & U and T | U over pairs of non-empty rows, and ~T per row: the gathers of the normal matrix."""
    rows = torch.arange(1, 1 << n, device=device)
    return rows[:, None] & rows[None, :], rows[:, None] | rows[None, :], ((1 << n) - 1) ^ rows


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _fill_lower(sum_and, sum_or, total_or, d_slack, out) -> None:
    """The lower triangle of the normal matrix (the only part Cholesky reads): 0.9 ms of CPU at n = 10
    where the gathers took 11 ms, and no (2^n)^2 index matrices."""
    rows = out.shape[0]
    full = rows  # 2^n - 1
    for i in range(rows):
        t = i + 1
        outside_t = sum_or[full ^ t]
        for j in range(i + 1):
            u = j + 1
            out[i, j] = sum_and[t & u] + total_or - outside_t - sum_or[full ^ u] + sum_or[full ^ (t | u)]
        out[i, i] += d_slack[i]


def _normal_matrix(d_and: torch.Tensor, d_or: torch.Tensor, d_slack: torch.Tensor, n: int) -> torch.Tensor:
    """A diag(d) A^T + diag(d_slack) over the non-empty rows, from subset sums (module docstring).

    On the CPU only the lower triangle is filled (compiled loop); elsewhere the full matrix by gathers.
    """
    if d_and.device.type != "cpu":
        return _normal_matrix_gathered(d_and, d_or, d_slack, n)
    out = torch.empty((d_slack.shape[0],) * 2, dtype=torch.float64)
    _fill_lower(subset_sum(d_and).numpy(), subset_sum(d_or).numpy(), float(d_or.sum()), d_slack.numpy(), out.numpy())
    return out


def _normal_matrix_gathered(d_and: torch.Tensor, d_or: torch.Tensor, d_slack: torch.Tensor, n: int) -> torch.Tensor:
    """The full normal matrix by two gathers over cached (2^n)^2 index matrices: the device path."""
    sum_and = subset_sum(d_and)
    sum_or = subset_sum(d_or)
    meet, join, complement = _pair_indices(n, d_and.device)
    outside = sum_or[complement]
    matrix = sum_and[meet]
    matrix += sum_or.flip(-1)[join]  # Sb(~(T | U)): flip reverses the binary order, i.e. complements
    matrix -= outside[:, None]
    matrix -= outside[None, :]
    matrix += d_or.sum()
    matrix.diagonal().add_(d_slack)
    return matrix


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _subset_sum_in_place(x) -> None:
    size = x.shape[0]
    step = 1
    while step < size:
        for base in range(0, size, step << 1):
            for j in range(base, base + step):
                x[j + step] += x[j]
        step <<= 1


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _superset_sum_in_place(x) -> None:
    size = x.shape[0]
    step = 1
    while step < size:
        for base in range(0, size, step << 1):
            for j in range(base, base + step):
                x[j] += x[j + step]
        step <<= 1


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _apply_a_compiled(x, out) -> None:
    """out <- (A x) on the non-empty rows, x over [AND | OR] columns: one call where the torch
    butterflies cost ~40 small dispatches (the CPU path; measured ~10x faster at n = 10)."""
    size = out.shape[0] + 1
    and_part = x[:size].copy()
    or_part = x[size:].copy()
    _subset_sum_in_place(and_part)
    total = 0.0
    for s in range(size):
        total += or_part[s]
    _subset_sum_in_place(or_part)
    for t in range(1, size):
        out[t - 1] = and_part[t] + total - or_part[(size - 1) ^ t]


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _apply_at_compiled(y_rows, admissible, out) -> None:
    """out <- A^T y over [AND | OR] columns (0 on inadmissible ones), y given on the non-empty rows."""
    size = y_rows.shape[0] + 1
    up = np.zeros(size)
    up[1:] = y_rows
    down = up.copy()
    total = 0.0
    for t in range(size):
        total += up[t]
    _superset_sum_in_place(up)
    _subset_sum_in_place(down)
    for s in range(size):
        out[s] = up[s] * admissible[s]
        out[size + s] = (total - down[(size - 1) ^ s]) * admissible[size + s]


def _cholesky_solve(factor: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Two triangular solves: measured 0.3 ms at n = 10 where ``torch.cholesky_solve`` took 1.4 ms."""
    half = torch.linalg.solve_triangular(factor, rhs[:, None], upper=False)
    return torch.linalg.solve_triangular(factor.mT, half, upper=True)[:, 0]


def solve(
    values: torch.Tensor,
    tau: float,
    and_ok: torch.Tensor,
    or_ok: torch.Tensor,
    options: InteriorPointOptions | None = None,
) -> InteriorPointResult:
    """Solve ``min ||x||_1 s.t. |A x - v| <= tau`` on non-empty rows for one scaled game ``values`` (2^n,).

    ``and_ok`` / ``or_ok`` are the admissible columns (``auditor.engine.certificate.admissible_masks``).
    """
    options = options or InteriorPointOptions()
    size = values.shape[-1]
    n = size.bit_length() - 1
    dtype, device = torch.float64, values.device
    values = values.to(dtype)
    ok = torch.cat([and_ok, or_ok])
    okf = ok.to(dtype)
    lo = values[1:] - tau
    width = 2.0 * tau
    boxed = width > 1e-12  # tau = 0: the rows are equalities and the slack is dropped
    tau_tensor = torch.tensor([tau], dtype=dtype, device=device)
    compiled = device.type == "cpu"  # numba loops for A and A^T; torch butterflies elsewhere
    okf_numpy = okf.numpy() if compiled else None

    def apply_a(x: torch.Tensor) -> torch.Tensor:
        if compiled:
            out = torch.empty(size - 1, dtype=dtype)
            _apply_a_compiled(x.contiguous().numpy(), out.numpy())
            return out
        return (subset_sum(x[:size]) + apply_or(x[None, size:])[0])[1:]

    def apply_at(y_rows: torch.Tensor) -> torch.Tensor:
        if compiled:
            out = torch.empty(2 * size, dtype=dtype)
            _apply_at_compiled(y_rows.contiguous().numpy(), okf_numpy, out.numpy())
            return out
        y = torch.cat([y_rows.new_zeros(1), y_rows])
        return torch.cat([superset_sum(y), apply_or(y[None])[0]]) * okf

    def certified(x: torch.Tensor, y_rows: torch.Tensor):
        duals = torch.cat([y_rows.new_zeros(1), y_rows])
        return certify(values[None], tau_tensor, (x[:size] * and_ok)[None], (x[size:] * or_ok)[None],
                       duals[None], and_ok, or_ok), duals

    rows = size - 1
    p, m = 0.01 * okf, 0.01 * okf  # measured: fewer iterations than 1 (233 against 273 on 14 dense lm games)
    z_p, z_m = okf.clone(), okf.clone()
    y = torch.zeros(rows, dtype=dtype, device=device)
    slack_ok = 1.0 if boxed else 0.0
    s = torch.full((rows,), width / 2, dtype=dtype, device=device)
    w = s.clone()  # 2 tau - s
    z_s = torch.full((rows,), slack_ok, dtype=dtype, device=device)
    z_w = z_s.clone()
    count = 2 * int(ok.sum()) + (2 * rows if boxed else 0)
    safe = lambda a: torch.where(ok, a, torch.ones_like(a))  # noqa: E731  inadmissible entries stay 0

    best = None
    since_best = 0
    iteration = 0

    def judge() -> float:
        """Certify the current point; keep it if its gap is the best so far."""
        nonlocal best, since_best
        certificate, duals = certified(p - m, y)
        gap = float(certificate.gap[0])
        if best is None or gap < best[0]:
            best, since_best = (gap, certificate, duals), 0
        else:
            since_best += 1
        return gap

    for iteration in range(options.max_iterations + 1):
        last = iteration == options.max_iterations or (
            options.deadline is not None and time.perf_counter() > options.deadline)
        complementarity = float((p * z_p).sum() + (m * z_m).sum() + ((s * z_s).sum() + (w * z_w).sum() if boxed else 0.0))
        # certificates cost ~6 transforms: only once the point is near the optimum (complementarity,
        # the duality gap of a feasible point, below 1e-3 of the objective), and at the end
        if last or complementarity <= 1e-3 * float((p + m).sum()):
            if judge() <= options.tol or since_best >= options.stall_iterations or last:
                break

        aty = apply_at(y)
        r_b = lo - (apply_a(p - m) - s)
        primal_infeasibility = float(r_b.abs().max())
        r_p = okf - aty - z_p
        r_m = okf + aty - z_m
        if boxed:
            r_s = y - z_s + z_w
            r_u = width - s - w
        mu = ((p * z_p).sum() + (m * z_m).sum() + ((s * z_s).sum() + (w * z_w).sum() if boxed else 0.0)) / count

        theta_p = torch.where(ok, safe(p) / safe(z_p), torch.zeros_like(p))
        theta_m = torch.where(ok, safe(m) / safe(z_m), torch.zeros_like(m))
        theta_s = 1.0 / (z_s / s + z_w / w) if boxed else torch.zeros_like(s)
        matrix = _normal_matrix(theta_p[:size] + theta_m[:size], theta_p[size:] + theta_m[size:], theta_s, n)
        matrix.diagonal().add_(1e-14 * float(matrix.diagonal().max()))  # keeps the factor defined as theta spreads
        factor, info = torch.linalg.cholesky_ex(matrix)
        if int(info) != 0:
            break  # numerically singular: keep the best certified point

        def direction(c_p, c_m, c_s, c_w):
            """Newton direction for complementarity targets c (x z -> x z + c); see module docstring."""
            g_p = torch.where(ok, -r_p + c_p / safe(p), torch.zeros_like(p))
            g_m = torch.where(ok, -r_m + c_m / safe(m), torch.zeros_like(m))
            g_s = (-r_s + c_s / s - (c_w - z_w * r_u) / w) if boxed else torch.zeros_like(s)
            rhs = r_b - (apply_a(theta_p * g_p - theta_m * g_m) - theta_s * g_s)
            dy = _cholesky_solve(factor, rhs)
            at_dy = apply_at(dy)
            dp, dm, ds = theta_p * (at_dy + g_p), theta_m * (-at_dy + g_m), theta_s * (-dy + g_s)
            previous = math.inf
            for _ in range(options.refinement_steps):
                residual = r_b - (apply_a(dp - dm) - ds)
                size_now = float(residual.abs().max())
                if size_now <= max(1e-15, 1e-2 * primal_infeasibility) or size_now >= previous:
                    break  # small next to the infeasibility the step removes, or no longer improving
                previous = size_now
                correction = _cholesky_solve(factor, residual)
                at_c = apply_at(correction)
                dy, dp, dm, ds = dy + correction, dp + theta_p * at_c, dm - theta_m * at_c, ds - theta_s * correction
            dz_p = torch.where(ok, (c_p - z_p * dp) / safe(p), torch.zeros_like(p))
            dz_m = torch.where(ok, (c_m - z_m * dm) / safe(m), torch.zeros_like(m))
            if boxed:
                dw = r_u - ds
                dz_s, dz_w = (c_s - z_s * ds) / s, (c_w - z_w * dw) / w
            else:
                dw = dz_s = dz_w = torch.zeros_like(s)
            return dp, dm, ds, dw, dy, dz_p, dz_m, dz_s, dz_w

        def largest_step(pairs) -> float:
            step = math.inf
            for x, dx in pairs:
                negative = dx < 0
                if bool(negative.any()):
                    step = min(step, float((-x[negative] / dx[negative]).min()))
            return step

        def step_lengths(d) -> tuple[float, float]:
            dp, dm, ds, dw, _, dz_p, dz_m, dz_s, dz_w = d
            primal = [(p[ok], dp[ok]), (m[ok], dm[ok])] + ([(s, ds), (w, dw)] if boxed else [])
            dual = [(z_p[ok], dz_p[ok]), (z_m[ok], dz_m[ok])] + ([(z_s, dz_s), (z_w, dz_w)] if boxed else [])
            return largest_step(primal), largest_step(dual)

        zero = torch.zeros_like(s)
        affine = direction(-p * z_p * okf, -m * z_m * okf, -s * z_s if boxed else zero, -w * z_w if boxed else zero)
        a_p, a_d = (min(1.0, a) for a in step_lengths(affine))
        dp, dm, ds, dw, _, dz_p, dz_m, dz_s, dz_w = affine
        mu_affine = (((p + a_p * dp) * (z_p + a_d * dz_p)).sum() + ((m + a_p * dm) * (z_m + a_d * dz_m)).sum()
                     + ((((s + a_p * ds) * (z_s + a_d * dz_s)).sum() + ((w + a_p * dw) * (z_w + a_d * dz_w)).sum())
                        if boxed else 0.0)) / count
        target = float((mu_affine / mu) ** 3) * float(mu)
        rhs = [(target - p * z_p - dp * dz_p) * okf, (target - m * z_m - dm * dz_m) * okf,
               (target - s * z_s - ds * dz_s) if boxed else zero, (target - w * z_w - dw * dz_w) if boxed else zero]
        corrector = direction(*rhs)
        a_p, a_d = (min(1.0, a) for a in step_lengths(corrector))
        for _ in range(options.centrality_correctors):
            # Gondzio: aim at longer steps, pulling the complementarity products of the trial point
            # back into [0.1, 10] x target; keep the correction only if the steps do get longer
            trial_p, trial_d = min(1.0, a_p + options.corrector_reach), min(1.0, a_d + options.corrector_reach)
            dp, dm, ds, dw, _, dz_p, dz_m, dz_s, dz_w = corrector
            products = [(p + trial_p * dp) * (z_p + trial_d * dz_p), (m + trial_p * dm) * (z_m + trial_d * dz_m),
                        (s + trial_p * ds) * (z_s + trial_d * dz_s), (w + trial_p * dw) * (z_w + trial_d * dz_w)]
            pulls = [(product.clamp(0.1 * target, 10.0 * target) - product).clamp(min=-10.0 * target)
                     for product in products]
            pulls = [pulls[0] * okf, pulls[1] * okf] + (pulls[2:] if boxed else [zero, zero])
            candidate = direction(*(r + pull for r, pull in zip(rhs, pulls)))
            b_p, b_d = (min(1.0, b) for b in step_lengths(candidate))
            if b_p + b_d < a_p + a_d + 0.1 * options.corrector_reach:
                break
            corrector, rhs, a_p, a_d = candidate, [r + pull for r, pull in zip(rhs, pulls)], b_p, b_d
        a_p, a_d = options.step_fraction * a_p, options.step_fraction * a_d
        dp, dm, ds, dw, dy, dz_p, dz_m, dz_s, dz_w = corrector
        p, m, y = p + a_p * dp, m + a_p * dm, y + a_d * dy
        z_p, z_m = z_p + a_d * dz_p, z_m + a_d * dz_m
        if boxed:
            s, w, z_s, z_w = s + a_p * ds, w + a_p * dw, z_s + a_d * dz_s, z_w + a_d * dz_w

    if best is None:  # stopped (a singular factor) before any point was judged
        judge()
    _, certificate, duals = best
    return InteriorPointResult(
        and_terms=certificate.and_terms[0], or_terms=certificate.or_terms[0], duals=duals,
        primal=float(certificate.primal[0]), dual=float(certificate.dual[0]), iterations=iteration,
    )


_section_lock = threading.Lock()
_section_depth = 0
_section_saved = 1


@contextmanager
def _one_torch_thread():
    """torch (MKL, OpenMP) on one thread while any caller is inside, restored by the last to leave.

    Why: at n = 10 a Cholesky factorisation is ~10 ms of work, and a 2-thread OpenMP team on a
    machine whose other core is busy waits for its descheduled thread at every barrier: measured on
    the 2 shared cores of bench/README.md, one dense game took 8.7-26 s (of CPU, spinning) with
    2 torch threads against 0.41 s with one. The games of a batch run in parallel instead, one per
    thread (``solve_many``). torch's thread count is process-wide, so the section is counted: nested
    or concurrent sections (an abandoned audit still solving) restore the setting exactly once.
    """
    global _section_depth, _section_saved
    with _section_lock:
        if _section_depth == 0:
            _section_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _section_depth += 1
    try:
        yield
    finally:
        with _section_lock:
            _section_depth -= 1
            if _section_depth == 0:
                torch.set_num_threads(_section_saved)


def solve_many(
    games: Sequence[tuple[torch.Tensor, float]],
    and_ok: torch.Tensor,
    or_ok: torch.Tensor,
    options: InteriorPointOptions | None = None,
) -> list[InteriorPointResult]:
    """``solve`` for several (values, tau) games: on the CPU one game per thread, as many threads as
    torch had on entry, each on single-threaded linear algebra (``_one_torch_thread``); on other
    devices one after the other."""
    if not games:
        return []
    if games[0][0].device.type != "cpu":
        return [solve(values, tau, and_ok, or_ok, options) for values, tau in games]
    threads = max(1, min(torch.get_num_threads(), len(games)))
    with _one_torch_thread():
        if threads == 1:
            return [solve(values, tau, and_ok, or_ok, options) for values, tau in games]
        with ThreadPoolExecutor(threads, thread_name_prefix="interior-point") as pool:
            return list(pool.map(lambda game: solve(game[0], game[1], and_ok, or_ok, options), games))


def warm_up() -> None:
    """Compile (or load from numba's cache) the normal-matrix loop now, not inside an audit's budget."""
    values = torch.tensor([0.0, 1.0, 0.5, 2.0], dtype=torch.float64)
    solve(values, 0.08, *(torch.tensor(mask) for mask in ([False, True, True, True], [False, False, False, True])))
