"""The AND-OR split as a linear program, solved to its certified optimum.

The problem (science.md section 2). With v normalised so that v(empty) = 0, a = AND terms and
b = OR terms (order-1 OR merged into AND), the split is basis-pursuit denoising:

    minimise  ||a||_1 + ||b||_1
    subject to  |(Z a + W b)(T) - v(T)| <= tau   for every non-empty T,     tau = qthres |v(N)|,

where (Z a)(T) = sum_{S subset T} a(S) and (W b)(T) = sum_{S meets T} b(S). Then v_and = Z a,
v_or = W b, q = Z a + W b - v, and g follows; every feasible point satisfies universal matching
exactly, and the AND-only mode is the same LP without the b columns. q(empty) = 0 keeps the
normalisation v(empty) = 0, so the matching holds exactly as science.md writes it.

How it is solved. The LP has 2^n rows and ~2^(n+1) columns, a dense normal matrix (interior-point
codes pay for all of it) and a condition number growing like 2.6^n (first-order methods crawl), but
its optimum is sparse. ``auditor.engine.simplex`` exploits that: a dual simplex that keeps only the
k x k block of tight rows and basic columns and prices everything else with O(n 2^n) transforms
(the module docstring explains the method and its measured cost). A game whose basis passes
``dense_fraction`` 2^n tight rows (default a quarter, for 9 <= n <= 12) has a dense optimum, where
the simplex's O(k^2) pivots cost more than HiGHS: the simplex hands it back and
``auditor.engine.interior_point`` solves it (about 20 Cholesky factorisations of the 2^n-square normal
matrix; measured at n = 10 on the lm batch's dense samples: ~0.4 s of CPU with the simplex's start,
instead of 0.4-14 s).
A game neither finishes (an iteration or time limit, a numerical breakdown, an interior point that
stalls above ``tol``) goes to ``auditor.engine.column_generation``, row and column generation over HiGHS,
warm-started from the dual simplex's last basis.

The certificate. Whatever produced it, a result is judged by ``auditor.engine.certificate``: the primal
point is made exactly feasible (upper bound P) and the dual vector scaled into the dual feasible set
(lower bound D, weak duality); ``gap = (P - D) / P`` is reported, and the default target 1e-6 is
checked, not assumed.

Exact where exact is cheap. In AND-only mode with tau = 0 (qthres = 0, or v(N) = v(empty)) the
constraints Z a = v pin a down: Z is unitriangular, so the only feasible point is the Möbius
transform of v, and it is returned directly (milliseconds, ``extra["method"] == "moebius"``) with
primal = dual = ||a||_1 and gap 0, which is exact, not a bound. In AND-OR mode qthres = 0 makes q = 0
but not the split: a AND(x, y) and OR(x, y) - AND(x) - AND(y) + 2 AND(x, y) reproduce the same game,
so the LP still runs and its gap is the LP's.

Time budget. No solve runs unbounded: ``SolverOptions.time_limit`` (seconds per sample) defaults to
:func:`default_time_limit`. A solve that hits it returns, it does not raise: the best point found is
made exactly feasible (or replaced by the Möbius point, feasible at any tau, when that one is
smaller), ``gap`` is its certified bound and ``extra["time_limit_hit"]`` is True.

Precision. Everything runs in float64, after scaling the game to max |v| = 1 (tolerances are then
relative): the transforms amplify noise by up to 2^k at order k, and the inner 1e-9 feasibility
tolerances must not become the reported error. On CUDA the dual simplex and the certificate run on
the device, also in float64: fp64 is exact enough for 0/1 matrices of this size, and the LP's
work is memory- and launch-bound, so fp64 costs little there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from auditor.engine import column_generation, interior_point
from auditor.engine import simplex
from auditor.engine.certificate import admissible_masks, apply_or, certify
from auditor.engine.interactions import Interactions, SolveMode
from auditor.engine.transforms import num_players, subset_mobius, subset_sum

__all__ = ["SolverOptions", "extract_interactions", "extract_batch", "default_time_limit", "MAX_PLAYERS"]

MAX_PLAYERS = 20  # 2^20 states: the CLI's limit; services cap n far lower (16)

Method = Literal["dual-simplex", "column-generation"]


@dataclass(frozen=True)
class SolverOptions:
    """Knobs of the solver; the defaults are what the benchmarks measure."""

    tol: float = 1e-6  # relative duality gap to certify
    method: Method = "dual-simplex"  # "column-generation" skips the dual simplex (a cross-check)
    # seconds per sample; None: default_time_limit(n); math.inf: no limit. When it is hit the best
    # certified point is returned with extra["time_limit_hit"] = True (see the module docstring)
    time_limit: float | None = None
    simplex: simplex.SimplexOptions = simplex.SimplexOptions()
    # a game whose simplex basis passes dense_fraction * 2^n tight rows has a dense optimum: it goes to
    # auditor.engine.interior_point (n in [dense_min_n, dense_max_n]: one (2^n)^2 matrix, 134 MB at n = 12)
    dense_fraction: float | None = 0.25
    dense_min_n: int = 9
    dense_max_n: int = 12
    interior_point: interior_point.InteriorPointOptions = interior_point.InteriorPointOptions()
    max_rounds: int = 500  # column generation
    rows_per_round: int | None = None
    cols_per_round: int | None = None
    inner_tolerance: float = 1e-10  # HiGHS primal/dual feasibility tolerance (on scaled values)


def default_time_limit(n: int) -> float:
    """The time budget per sample when ``SolverOptions.time_limit`` is None: max(60, 2^n x 4 ms) s.

    Why this shape: a pivot or a pricing pass costs O(n 2^n) and a game with a dense optimum needs
    on the order of 2^n pivots, so the budget grows with 2^n: sparse games finish in milliseconds
    far inside it, dense ones at n <= 12 in seconds (bench/README.md), and a dense game at n = 14
    (~65 s) or 16 (~4.4 min) stops with its certified gap instead of running for hours. The 60 s
    floor covers the first call's kernel compilation (~15 s, cached afterwards) on a loaded CPU.
    """
    return max(60.0, (1 << n) * 4e-3)


def _as_tensor(values: torch.Tensor | np.ndarray | Sequence[float], device: torch.device | str | None) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    if device is not None:
        tensor = tensor.to(device)
    return tensor.to(torch.float64)


def _validated(values, qthres: float, mode: str, names, device) -> torch.Tensor:
    if mode not in ("and-or", "and"):
        raise ValueError(f"mode must be 'and-or' or 'and', got {mode!r}")
    if not 0.0 <= qthres < 1.0 or not math.isfinite(qthres):
        raise ValueError(f"qthres must be in [0, 1), got {qthres}")
    games = _as_tensor(values, device)
    if games.ndim == 1:
        games = games[None]
    if games.ndim != 2:
        raise ValueError(f"values must have shape (2^n,) or (B, 2^n), got {tuple(games.shape)}")
    n = num_players(games.shape[-1])
    if n > MAX_PLAYERS:
        raise ValueError(f"n = {n} players exceeds the limit of {MAX_PLAYERS}")
    if not torch.isfinite(games).all():
        raise ValueError("values contain NaN or inf")
    if names is not None and len(names) != n:
        raise ValueError(f"got {len(names)} names for {n} players")
    return games


def extract_batch(
    values: torch.Tensor | np.ndarray,
    *,
    qthres: float = 0.04,
    mode: SolveMode = "and-or",
    names: Sequence[str] | None = None,
    options: SolverOptions | None = None,
    device: torch.device | str | None = None,
    tol: float | None = None,
) -> list[Interactions]:
    """AND-OR interactions of a batch of games ``values[B, 2^n]`` at the certified LP optimum.

    ``v(empty)`` need not be 0: it is subtracted (and kept as ``offset``). ``device`` chooses where
    the solver runs (default: where ``values`` live).
    """
    options = options or SolverOptions()
    if tol is not None:
        options = replace(options, tol=tol)
    games = _validated(values, qthres, mode, names, device)
    if options.time_limit is not None and not options.time_limit > 0:
        raise ValueError(f"time_limit must be positive seconds (math.inf for none), got {options.time_limit}")
    started = time.perf_counter()
    batch, size = games.shape
    n = num_players(size)
    offsets = games[:, 0].clone()
    normalised = games - offsets[:, None]
    scale = normalised.abs().amax(dim=-1).clamp(min=1e-300)
    scaled = normalised / scale[:, None]
    tau = qthres * scaled[:, -1].abs()
    and_ok, or_ok = admissible_masks(n, mode, games.device)
    limit = default_time_limit(n) if options.time_limit is None else options.time_limit
    deadline = None if math.isinf(limit) else started + limit * batch

    solutions: list[tuple[torch.Tensor, torch.Tensor, float, float, dict] | None] = [None] * batch
    if mode == "and":  # tau = 0: the Möbius transform is the only feasible point (module docstring)
        for b in torch.nonzero(tau == 0).flatten().tolist():
            solutions[b] = _moebius_solution(scaled[b])
    rest = [b for b in range(batch) if solutions[b] is None]
    bases: dict[int, tuple] = {b: ((), ()) for b in rest}
    if rest and options.method == "dual-simplex":
        _dual_simplex(scaled, tau, rest, and_ok, or_ok, options, deadline, solutions, bases)

    fallback = column_generation.ColumnGenerationOptions(
        tol=options.tol, max_rounds=options.max_rounds, rows_per_round=options.rows_per_round,
        cols_per_round=options.cols_per_round, inner_tolerance=options.inner_tolerance, deadline=deadline,
    )
    for b in rest:
        solution = solutions[b]
        if solution is not None and _gap(solution[2], solution[3]) <= options.tol:
            continue
        if solution is not None and deadline is not None and time.perf_counter() > deadline:
            continue  # out of time: keep the dual simplex's certified point and its honest gap
        rows, columns = bases[b]
        finished = column_generation.solve(scaled[b], float(tau[b]), and_ok, or_ok, fallback, rows, columns)
        info = {"method": "column-generation", "rounds": finished.rounds,
                "rows_in_working_set": finished.working_rows, "columns_in_working_set": finished.working_columns,
                "highs_iterations": finished.simplex_iterations}
        if solution is not None:
            info = {**solution[4], **info, "method": "dual-simplex+column-generation"}
        if solution is None or _gap(finished.primal, finished.dual) <= _gap(solution[2], solution[3]):
            solutions[b] = (finished.and_terms, finished.or_terms, finished.primal, finished.dual, info)

    out_of_time = deadline is not None and time.perf_counter() >= deadline
    for b in range(batch):
        and_terms, or_terms, primal, dual, info = solutions[b]
        unfinished = _gap(primal, dual) > options.tol
        info = {**info, "time_limit_hit": unfinished and out_of_time}
        solutions[b] = (and_terms, or_terms, primal, dual, info)
        if not unfinished:
            continue
        moebius = _moebius_solution(scaled[b])
        if moebius[2] < primal:  # a better upper bound, feasible at any tau; the dual bound stands
            and_terms, or_terms, primal = moebius[0], moebius[1], moebius[2]
            info["primal_point"] = "moebius"
        solutions[b] = (and_terms, or_terms, primal, dual, info)

    elapsed = time.perf_counter() - started
    return [
        _package(n, normalised[b], *solutions[b][:4], float(scale[b]), float(tau[b]), float(offsets[b]), qthres,
                 mode, names, elapsed / batch, solutions[b][4])
        for b in range(batch)
    ]


def _moebius_solution(scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float, dict]:
    """The Möbius point (AND terms only, q = 0): the LP's unique solution in AND mode at tau = 0."""
    and_terms = subset_mobius(scaled)
    and_terms[0] = 0.0
    objective = float(and_terms.abs().sum())
    return and_terms, torch.zeros_like(and_terms), objective, objective, {"method": "moebius"}


def _dual_simplex(scaled: torch.Tensor, tau: torch.Tensor, rest: list[int], and_ok: torch.Tensor,
                  or_ok: torch.Tensor, options: SolverOptions, deadline: float | None,
                  solutions: list, bases: dict[int, tuple]) -> None:
    """Dual simplex on the samples ``rest``, dense optima handed to the interior point; fills
    ``solutions`` and ``bases`` (the warm start of column generation) in place."""
    size = scaled.shape[-1]
    n = num_players(size)
    picked = torch.as_tensor(rest, device=scaled.device)
    games, taus = scaled[picked], tau[picked]
    allowed = torch.cat([and_ok, or_ok]).cpu().numpy()
    simplex_options = options.simplex
    if options.dense_fraction is not None and options.dense_min_n <= n <= options.dense_max_n:
        simplex_options = replace(simplex_options, max_basis=max(1, int(options.dense_fraction * size)))
    if deadline is not None:
        simplex_options = replace(simplex_options, time_limit=max(deadline - time.perf_counter(), 0.0))
    pivoted = simplex.solve(games, taus, allowed, simplex_options)
    to_device = lambda array: torch.as_tensor(array, device=scaled.device)  # noqa: E731
    and_terms, or_terms = to_device(pivoted.and_terms), to_device(pivoted.or_terms)
    candidates = [certify(games, taus, and_terms, or_terms, to_device(duals), and_ok, or_ok)
                  for duals in (pivoted.duals, pivoted.perturbed_duals)]
    dual = torch.maximum(candidates[0].dual, candidates[1].dual)
    primal = candidates[0].primal
    for j, b in enumerate(rest):
        info = {"method": "dual-simplex", "simplex_iterations": int(pivoted.iterations[j]),
                "basis_size": len(pivoted.basis_rows[j]), "simplex_converged": bool(pivoted.converged[j])}
        solutions[b] = (candidates[0].and_terms[j], candidates[0].or_terms[j], float(primal[j]), float(dual[j]), info)
        bases[b] = (pivoted.basis_rows[j], pivoted.basis_columns[j])
    dense = [rest[j] for j in np.flatnonzero(pivoted.dense).tolist()]
    settings = replace(options.interior_point, tol=options.tol, deadline=deadline)
    finished = interior_point.solve_many([(scaled[b], float(tau[b])) for b in dense], and_ok, or_ok, settings)
    for b, result in zip(dense, finished):
        info = {**solutions[b][4], "method": "dual-simplex+interior-point",
                "interior_point_iterations": result.iterations, "basis_size": None}
        solutions[b] = (result.and_terms, result.or_terms, result.primal, result.dual, info)


def _gap(primal: float, dual: float) -> float:
    return max(primal - dual, 0.0) / primal if primal > 0 else 0.0


def _package(
    n: int,
    normalised: torch.Tensor,
    and_terms: torch.Tensor,
    or_terms: torch.Tensor,
    primal: float,
    dual: float,
    scale: float,
    tau: float,
    offset: float,
    qthres: float,
    mode: SolveMode,
    names: Sequence[str] | None,
    seconds: float,
    info: dict,
) -> Interactions:
    """Back to the caller's units, with q such that v + q is matched exactly by the terms."""
    and_scaled = (and_terms * scale).cpu().numpy()
    or_scaled = (or_terms * scale).cpu().numpy()
    values = normalised.cpu().numpy()
    rebuilt = subset_sum(torch.as_tensor(and_scaled)) + apply_or(torch.as_tensor(or_scaled)[None])[0]
    q = rebuilt.numpy() - values
    q[0] = 0.0
    # pivots, plus interior-point iterations and fallback rounds
    iterations = info.get("simplex_iterations", 0) + info.get("interior_point_iterations", 0) + info.get("rounds", 0)
    return Interactions(
        n=n,
        values=values,
        and_terms=and_scaled,
        or_terms=or_scaled,
        q=q,
        tau=tau * scale,
        qthres=qthres,
        mode=mode,
        objective=primal * scale,
        dual_bound=dual * scale,
        gap=_gap(primal, dual),
        iterations=int(iterations),
        solve_seconds=seconds,
        names=list(names) if names is not None else None,
        offset=offset,
        extra=info,
    )


def extract_interactions(
    values: torch.Tensor | np.ndarray | Sequence[float],
    *,
    qthres: float = 0.04,
    mode: SolveMode = "and-or",
    names: Sequence[str] | None = None,
    options: SolverOptions | None = None,
    device: torch.device | str | None = None,
    tol: float | None = None,
) -> Interactions:
    """AND-OR (or AND-only) interactions of one game given as its 2^n outputs in binary order."""
    tensor = _as_tensor(values, device)
    if tensor.ndim != 1:
        raise ValueError(f"values must be a vector of length 2^n, got shape {tuple(tensor.shape)}")
    return extract_batch(tensor, qthres=qthres, mode=mode, names=names, options=options, device=device, tol=tol)[0]
