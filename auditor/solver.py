"""The AND-OR split as a linear program, solved to its certified optimum by row-and-column generation.

The problem (science.md section 2). With v normalised so that v(empty) = 0, a = AND terms and
b = OR terms (order-1 OR merged into AND), the split is basis-pursuit denoising:

    minimise  ||a||_1 + ||b||_1
    subject to  |(Z a + W b)(T) - v(T)| <= tau   for every non-empty T,     tau = qthres |v(N)|,

where (Z a)(T) = sum_{S subset T} a(S) and (W b)(T) = sum_{S meets T} b(S). Then v_and = Z a,
v_or = W b, q = Z a + W b - v, and g follows; every feasible point satisfies universal matching
exactly, and the AND-only mode is the same LP without the b columns. q(empty) = 0 keeps the
normalisation v(empty) = 0, so the matching holds exactly as science.md writes it.

Why this algorithm. The LP has 2^n rows and about 2^(n+1) columns with O(3^n) non-zeros, and its
normal matrix is dense: interior-point and simplex codes pay for the whole matrix (HiGHS: ~1-4 s
at n = 10, minutes at n = 12), while first-order methods crawl (condition number ~2.6^n). But the
optimum is sparse: tens to a few hundred non-zero terms, tied to as many active rows. So we solve a
*restricted* LP over a working set of rows R and columns C with HiGHS' dual simplex (exact vertex
solutions, warm-started from the previous basis when rows and columns are added), and price the
full problem with the fast transforms in O(n 2^n):

- primal side: the restricted solution x gives residuals on all 2^n rows (``subset_sum``); rows
  whose residual leaves the tau-box are added (with the AND column of the same set, which keeps the
  restricted LP feasible: Z restricted to R x R is unitriangular);
- dual side: the restricted dual y (zero outside R) gives the reduced costs 1 -+ (A^T y)(S) of all
  columns (``superset_sum`` and a complemented ``subset_sum``); columns with |A^T y| > 1 are added.

Convergence guarantee and certificate. Every round either adds a violated row or column or stops;
there are finitely many, so the method terminates (classic cutting-plane / column-generation
argument), in practice after a handful of rounds. Independently of how it got there, each round
builds a *certificate* from the full problem: the primal point is made exactly feasible (any excess
residual is absorbed into AND terms through the Moebius transform), giving an upper bound P; the
dual vector is scaled into the dual feasible set {|A^T y| <= 1}, giving the lower bound
D = v.y - tau ||y||_1 (weak duality). We stop when (P - D) / P <= tol (default 1e-6) and return
P, D and the gap. A result is therefore never claimed optimal without proof.

Cost. A round costs one warm-started simplex solve of the restricted LP plus O(n 2^n) pricing. For
games with a sparse optimum (planted games, trained models: tens to ~150 salient terms) the working
set stays at a fraction of the LP and the certified optimum comes in milliseconds to tenths of a
second at n = 10. The worst case is a game without structure (i.i.d. noise): its optimum has ~2^(n-1)
non-zero terms, the working set grows to the whole LP and the dense simplex is slower than HiGHS on
the full problem (see bench/README.md for the measured table). Such games carry no sparse
explanation to report anyway; the certificate still tells the truth about them.

Precision. Everything runs in float64 (values are scaled to max |v| = 1 first, so tolerances are
relative): the transforms amplify noise by up to 2^k at order k, and the inner solver's 1e-9
feasibility tolerances must not become the reported error. On CUDA the pricing transforms run in
float64 on the device (fp64 is exact enough and the transforms are memory-bound, so it costs little);
the small restricted LPs are solved by HiGHS on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import torch

from auditor.interactions import Interactions, SolveMode
from auditor.transforms import flip, num_players, subset_mobius, subset_sum, superset_sum

__all__ = ["SolverOptions", "extract_interactions", "extract_batch", "MAX_PLAYERS"]

MAX_PLAYERS = 20  # 2^20 states: the CLI's limit; services cap n far lower (16)


@dataclass(frozen=True)
class SolverOptions:
    """Knobs of the row-and-column generation; the defaults are what the benchmarks measure."""

    tol: float = 1e-6  # relative duality gap to certify
    max_rounds: int = 500
    rows_per_round: int | None = None  # default: scales with 2^n, see _batch_size
    cols_per_round: int | None = None
    inner_tolerance: float = 1e-10  # HiGHS primal/dual feasibility tolerance (on scaled values)
    time_limit: float | None = None  # seconds per sample; the best certified point is returned


# --- the full operator and its adjoint, batched over rows of a (B, 2^n) tensor --------------------


def _apply_or(b: torch.Tensor) -> torch.Tensor:
    """(W b)(T) = sum over S meeting T of b(S) = sum(b) - sum over S inside N \\ T of b(S)."""
    return b.sum(dim=-1, keepdim=True) - flip(subset_sum(b))


def _or_adjoint(y: torch.Tensor) -> torch.Tensor:
    """(W^T y)(S) = sum over T meeting S of y(T); W is symmetric in its set arguments."""
    return _apply_or(y)


def _columns_allowed(n: int, mode: SolveMode, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of admissible AND and OR columns: non-empty AND sets; OR sets of order >= 2."""
    index = torch.arange(1 << n, device=device)
    and_ok = index != 0
    if mode == "and":
        or_ok = torch.zeros_like(and_ok)
    else:
        or_ok = (index & (index - 1)) != 0  # at least two bits set
    return and_ok, or_ok


# --- one sample's restricted LP ------------------------------------------------------------------


class _RestrictedLP:
    """The LP over a working set of rows and columns, kept warm inside one HiGHS instance.

    Each logical column S (AND or OR) is two HiGHS columns, x+ and x-, both with cost 1 and bound
    [0, inf): their difference is the term and their sum its absolute value.
    """

    def __init__(self, values: np.ndarray, tau: float, options: SolverOptions) -> None:
        self.values = values
        self.tau = tau
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        self.highs.setOptionValue("presolve", "off")  # presolve would discard the warm basis
        self.highs.setOptionValue("primal_feasibility_tolerance", options.inner_tolerance)
        self.highs.setOptionValue("dual_feasibility_tolerance", options.inner_tolerance)
        self.rows: list[int] = []
        self.columns: list[tuple[str, int]] = []
        self.row_set: set[int] = set()
        self.column_set: set[tuple[str, int]] = set()
        self.simplex_iterations = 0

    def add(self, rows: Sequence[int], columns: Sequence[tuple[str, int]]) -> None:
        """Add rows first (as constraints on existing columns), then columns on all rows."""
        new_rows = [int(r) for r in rows if int(r) not in self.row_set]
        # the AND column of every new row keeps the restricted LP feasible (unitriangular block)
        new_columns = [c for c in columns if c not in self.column_set]
        for r in new_rows:
            if ("and", r) not in self.column_set and ("and", r) not in new_columns:
                new_columns.append(("and", r))
        if new_rows:
            self._add_rows(new_rows)
        if new_columns:
            self._add_columns(new_columns)

    def _add_rows(self, new_rows: list[int]) -> None:
        rows = np.asarray(new_rows, dtype=np.int64)[:, None]
        kinds = np.asarray([kind == "and" for kind, _ in self.columns], dtype=bool)
        masks = np.asarray([column for _, column in self.columns], dtype=np.int64)
        overlap = rows & masks[None, :]
        hits = np.where(kinds[None, :], overlap == masks[None, :], overlap != 0)  # (rows, columns)
        # each logical column is a (+, -) pair of HiGHS columns
        row_index, column_index = np.nonzero(hits)
        indices = np.stack([2 * column_index, 2 * column_index + 1], axis=1).reshape(-1)
        coefficients = np.tile([1.0, -1.0], len(column_index))
        starts = 2 * np.searchsorted(row_index, np.arange(len(new_rows)))
        targets = self.values[new_rows]
        self.highs.addRows(
            len(new_rows),
            np.asarray(targets - self.tau, dtype=np.float64),
            np.asarray(targets + self.tau, dtype=np.float64),
            len(indices),
            starts.astype(np.int32),
            indices.astype(np.int32),
            coefficients.astype(np.float64),
        )
        self.rows += new_rows
        self.row_set.update(new_rows)

    def _add_columns(self, new_columns: list[tuple[str, int]]) -> None:
        row_masks = np.asarray(self.rows, dtype=np.int64)[None, :]
        kinds = np.asarray([kind == "and" for kind, _ in new_columns], dtype=bool)[:, None]
        masks = np.asarray([column for _, column in new_columns], dtype=np.int64)[:, None]
        overlap = row_masks & masks
        hits = np.where(kinds, overlap == masks, overlap != 0)  # (columns, rows)
        column_index, row_index = np.nonzero(hits)
        per_column = np.bincount(column_index, minlength=len(new_columns))
        # the + and - copies of a column have the same rows, with coefficients +1 and -1
        indices = np.concatenate([np.tile(row_index[column_index == c], 2) for c in range(len(new_columns))]) if len(new_columns) else np.zeros(0)
        signs = np.concatenate([np.repeat([1.0, -1.0], per_column[c]) for c in range(len(new_columns))]) if len(new_columns) else np.zeros(0)
        lengths = np.repeat(per_column, 2)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        coefficients = signs
        count = 2 * len(new_columns)
        self.highs.addCols(
            count,
            np.ones(count),
            np.zeros(count),
            np.full(count, highspy.kHighsInf),
            len(indices),
            starts.astype(np.int32),
            indices.astype(np.int32),
            coefficients.astype(np.float64),
        )
        self.columns += new_columns
        self.column_set.update(new_columns)

    def solve(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Solve and scatter the solution to full vectors: AND terms, OR terms, row duals."""
        self.highs.run()
        status = self.highs.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"restricted LP not solved to optimality: {self.highs.modelStatusToString(status)}")
        self.simplex_iterations = int(self.highs.getInfo().simplex_iteration_count)
        solution = self.highs.getSolution()
        signed = np.asarray(solution.col_value[0::2]) - np.asarray(solution.col_value[1::2])
        and_terms, or_terms, duals = np.zeros(size), np.zeros(size), np.zeros(size)
        for (kind, column), value in zip(self.columns, signed):
            (and_terms if kind == "and" else or_terms)[column] += value
        duals[self.rows] = solution.row_dual
        return and_terms, or_terms, duals


# --- the driver ----------------------------------------------------------------------------------


@dataclass
class _Certificate:
    and_terms: torch.Tensor  # (B, 2^n) primal, made exactly feasible
    or_terms: torch.Tensor
    primal: torch.Tensor  # (B,)
    dual: torch.Tensor  # (B,)
    row_violation: torch.Tensor  # (B, 2^n): |residual| - tau, > 0 where violated
    column_violation: torch.Tensor  # (B, 2^(n+1)): |A^T y| - 1 over [AND | OR] columns


def _certify(
    values: torch.Tensor,
    tau: torch.Tensor,
    and_terms: torch.Tensor,
    or_terms: torch.Tensor,
    duals: torch.Tensor,
    and_ok: torch.Tensor,
    or_ok: torch.Tensor,
) -> _Certificate:
    """Price the full LP at the restricted solution and bound the optimum from both sides."""
    residual = subset_sum(and_terms) + _apply_or(or_terms) - values
    residual[:, 0] = 0.0
    box = tau[:, None]
    row_violation = residual.abs() - box
    excess = residual - residual.clamp(min=-box, max=box)
    feasible_and = and_terms - subset_mobius(excess)  # Z(a - M e) = Z a - e: residual now in the box
    primal = feasible_and.abs().sum(dim=-1) + or_terms.abs().sum(dim=-1)

    pricing_and = torch.where(and_ok, superset_sum(duals).abs(), 0.0)
    pricing_or = torch.where(or_ok, _or_adjoint(duals).abs(), 0.0)
    worst = torch.maximum(pricing_and.amax(dim=-1), pricing_or.amax(dim=-1)).clamp(min=1.0)
    dual = ((values * duals).sum(dim=-1) - tau * duals.abs().sum(dim=-1)) / worst
    column_violation = torch.cat([pricing_and, pricing_or], dim=-1) - 1.0
    return _Certificate(feasible_and, or_terms, primal, dual, row_violation, column_violation)


def _batch_size(n: int, requested: int | None) -> int:
    """How many rows/columns to add per round: enough to finish in few rounds, few enough to stay small."""
    if requested is not None:
        return requested
    return int(min(256, max(16, (1 << n) // 16)))


def _as_tensor(values: torch.Tensor | np.ndarray | Sequence[float], device: torch.device | str | None) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    if device is not None:
        tensor = tensor.to(device)
    return tensor.to(torch.float64)


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
    the O(n 2^n) pricing runs (default: where ``values`` live).
    """
    if mode not in ("and-or", "and"):
        raise ValueError(f"mode must be 'and-or' or 'and', got {mode!r}")
    if not 0.0 <= qthres < 1.0 or not math.isfinite(qthres):
        raise ValueError(f"qthres must be in [0, 1), got {qthres}")
    options = options or SolverOptions()
    if tol is not None:
        options = SolverOptions(**{**options.__dict__, "tol": tol})
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

    started = time.perf_counter()
    size = 1 << n
    offsets = games[:, 0].clone()
    normalised = games - offsets[:, None]
    scale = normalised.abs().amax(dim=-1).clamp(min=1e-300)
    scaled = normalised / scale[:, None]
    tau = qthres * scaled[:, -1].abs()
    and_ok, or_ok = _columns_allowed(n, mode, games.device)
    rows_per_round = _batch_size(n, options.rows_per_round)
    cols_per_round = _batch_size(n, options.cols_per_round)

    scaled_cpu = scaled.cpu().numpy()
    problems = [_RestrictedLP(scaled_cpu[b], float(tau[b]), options) for b in range(len(games))]
    starting_rows = [1 << i for i in range(n)] + [size - 1]
    for problem in problems:
        problem.add(starting_rows, [])

    batch = len(games)
    best: list[tuple[torch.Tensor, torch.Tensor, float, float] | None] = [None] * batch
    rounds = [0] * batch
    active = list(range(batch))
    deadline = None if options.time_limit is None else started + options.time_limit * batch
    while active:
        solutions = [problems[b].solve(size) for b in active]
        stack = lambda k: torch.as_tensor(np.stack([s[k] for s in solutions]), device=games.device)  # noqa: E731
        certificate = _certify(scaled[active], tau[active], stack(0), stack(1), stack(2), and_ok, or_ok)
        still_active = []
        for position, b in enumerate(active):
            rounds[b] += 1
            primal = float(certificate.primal[position])
            dual = float(certificate.dual[position])
            if best[b] is None or primal - dual < best[b][2] - best[b][3]:
                best[b] = (certificate.and_terms[position], certificate.or_terms[position], primal, dual)
            gap = (primal - dual) / max(primal, 1e-300)
            row_violation = certificate.row_violation[position]
            column_violation = certificate.column_violation[position]
            new_rows = _most_violated(row_violation, rows_per_round, options.inner_tolerance)
            new_columns = _most_violated(column_violation, cols_per_round, options.inner_tolerance)
            finished = gap <= options.tol or (not new_rows and not new_columns)
            out_of_time = rounds[b] >= options.max_rounds or (deadline is not None and time.perf_counter() > deadline)
            if finished or out_of_time:
                continue
            problems[b].add(new_rows, [("and", c) if c < size else ("or", c - size) for c in new_columns])
            still_active.append(b)
        active = still_active

    elapsed = time.perf_counter() - started
    results = []
    for b in range(batch):
        and_terms, or_terms, primal, dual = best[b]  # type: ignore[misc]
        results.append(
            _package(
                n, normalised[b], and_terms, or_terms, primal, dual, float(scale[b]), float(tau[b]),
                float(offsets[b]), qthres, mode, names, rounds[b], elapsed / batch,
                problems[b],
            )
        )
    return results


def _most_violated(violation: torch.Tensor, limit: int, tolerance: float) -> list[int]:
    """Indices of the ``limit`` largest violations above ``tolerance``, largest first."""
    count = int((violation > tolerance).sum())
    if count == 0:
        return []
    top = torch.topk(violation, min(limit, count)).indices
    return [int(i) for i in top.cpu()]


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
    rounds: int,
    seconds: float,
    problem: _RestrictedLP,
) -> Interactions:
    """Back to the caller's units, with q such that v + q is matched exactly by the terms."""
    and_scaled = (and_terms * scale).cpu().numpy()
    or_scaled = (or_terms * scale).cpu().numpy()
    values = normalised.cpu().numpy()
    rebuilt = subset_sum(torch.as_tensor(and_scaled)) + _apply_or(torch.as_tensor(or_scaled)[None])[0]
    q = rebuilt.numpy() - values
    q[0] = 0.0
    gap = max(primal - dual, 0.0) / max(primal, 1e-300) if primal > 0 else 0.0
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
        gap=gap,
        iterations=rounds,
        solve_seconds=seconds,
        names=list(names) if names is not None else None,
        offset=offset,
        extra={
            "rows_in_working_set": len(problem.rows),
            "columns_in_working_set": len(problem.columns),
            "simplex_iterations": problem.simplex_iterations,
        },
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
