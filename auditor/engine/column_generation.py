"""The certified fallback: row-and-column generation over HiGHS, for games the dual simplex did not finish.

A *restricted* LP over a working set of rows R and columns C is solved with HiGHS' dual simplex
(exact vertex solutions, warm-started from the previous basis when rows and columns are added),
and the full problem is priced with the fast transforms in O(n 2^n):

- primal side: the restricted solution gives residuals on all 2^n rows; rows whose residual leaves
  the tau-box are added (with the AND column of the same set, which keeps the restricted LP
  feasible: Z restricted to R x R is unitriangular);
- dual side: the restricted dual y (zero outside R) gives |A^T y| for all columns; columns with
  |A^T y| > 1 are added.

Every round either adds a violated row or column or stops; there are finitely many, so the method
terminates (the classic cutting-plane / column-generation argument), and each round is certified by
``auditor.engine.certificate``. It is slower than ``auditor.engine.simplex`` (a general LP code re-solves
the growing restricted LP, whose OR columns are dense), but it shares none of its pivoting code, so
a game on which the dual simplex breaks down numerically or runs out of iterations is still solved
to a certified optimum. It starts from the dual simplex's last basis when there is one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import torch

from auditor.engine.certificate import certify

__all__ = ["ColumnGenerationOptions", "ColumnGenerationResult", "solve"]


@dataclass(frozen=True)
class ColumnGenerationOptions:
    tol: float = 1e-6  # relative duality gap to certify
    max_rounds: int = 500
    rows_per_round: int | None = None  # default: scales with 2^n, see _batch_size
    cols_per_round: int | None = None
    inner_tolerance: float = 1e-10  # HiGHS primal/dual feasibility tolerance (on scaled values)
    deadline: float | None = None  # time.perf_counter() value after which the best point is returned


@dataclass
class ColumnGenerationResult:
    and_terms: torch.Tensor  # exactly feasible (certified) primal point, scaled units
    or_terms: torch.Tensor
    primal: float
    dual: float
    rounds: int
    working_rows: int
    working_columns: int
    simplex_iterations: int


class _RestrictedLP:
    """The LP over a working set of rows and columns, kept warm inside one HiGHS instance.

    Each logical column S (AND or OR) is two HiGHS columns, x+ and x-, both with cost 1 and bound
    [0, inf): their difference is the term and their sum its absolute value.
    """

    def __init__(self, values: np.ndarray, tau: float, options: ColumnGenerationOptions) -> None:
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
        self.simplex_iterations += int(self.highs.getInfo().simplex_iteration_count)
        solution = self.highs.getSolution()
        signed = np.asarray(solution.col_value[0::2]) - np.asarray(solution.col_value[1::2])
        and_terms, or_terms, duals = np.zeros(size), np.zeros(size), np.zeros(size)
        for (kind, column), value in zip(self.columns, signed):
            (and_terms if kind == "and" else or_terms)[column] += value
        duals[self.rows] = solution.row_dual
        return and_terms, or_terms, duals


def _batch_size(n: int, requested: int | None) -> int:
    """How many rows/columns to add per round: enough to finish in few rounds, few enough to stay small."""
    if requested is not None:
        return requested
    return int(min(256, max(16, (1 << n) // 16)))


def _most_violated(violation: torch.Tensor, limit: int, tolerance: float) -> list[int]:
    """Indices of the ``limit`` largest violations above ``tolerance``, largest first."""
    count = int((violation > tolerance).sum())
    if count == 0:
        return []
    top = torch.topk(violation, min(limit, count)).indices
    return [int(i) for i in top.cpu()]


def solve(
    values: torch.Tensor,
    tau: float,
    and_ok: torch.Tensor,
    or_ok: torch.Tensor,
    options: ColumnGenerationOptions,
    start_rows: Sequence[int] = (),
    start_columns: Sequence[int] = (),
) -> ColumnGenerationResult:
    """Certified optimum of one scaled game ``values`` (2^n,), v(empty) = 0.

    ``start_rows`` / ``start_columns`` (OR set S given as 2^n + S) seed the working set.
    """
    size = values.shape[-1]
    n = size.bit_length() - 1
    problem = _RestrictedLP(values.cpu().numpy(), tau, options)
    rows = sorted(set([1 << i for i in range(n)] + [size - 1] + [int(r) for r in start_rows if r]))
    columns = [("and", c) if c < size else ("or", c - size) for c in start_columns]
    problem.add(rows, columns)
    rows_per_round = _batch_size(n, options.rows_per_round)
    cols_per_round = _batch_size(n, options.cols_per_round)
    games = values[None]
    taus = torch.tensor([tau], dtype=torch.float64, device=values.device)
    best: tuple[torch.Tensor, torch.Tensor, float, float] | None = None
    rounds = 0
    while True:
        and_terms, or_terms, duals = problem.solve(size)
        as_tensor = lambda array: torch.as_tensor(array, device=values.device)[None]  # noqa: E731
        certificate = certify(games, taus, as_tensor(and_terms), as_tensor(or_terms), as_tensor(duals), and_ok, or_ok)
        rounds += 1
        primal, dual = float(certificate.primal[0]), float(certificate.dual[0])
        if best is None or primal - dual < best[2] - best[3]:
            best = (certificate.and_terms[0], certificate.or_terms[0], primal, dual)
        gap = (primal - dual) / max(primal, 1e-300)
        new_rows = _most_violated(certificate.row_violation[0], rows_per_round, options.inner_tolerance)
        new_columns = _most_violated(certificate.column_violation[0], cols_per_round, options.inner_tolerance)
        finished = gap <= options.tol or (not new_rows and not new_columns)
        out_of_time = rounds >= options.max_rounds or (
            options.deadline is not None and time.perf_counter() > options.deadline
        )
        if finished or out_of_time:
            break
        problem.add(new_rows, [("and", c) if c < size else ("or", c - size) for c in new_columns])
    and_terms, or_terms, primal, dual = best
    return ColumnGenerationResult(and_terms, or_terms, primal, dual, rounds, len(problem.rows),
                                  len(problem.columns), problem.simplex_iterations)
