"""The dual simplex of ``auditor.engine.simplex`` as tensor operations over a batch of games.

Every step of an iteration is one tensor operation over all games still running, so a batch
advances in lockstep and costs about as many kernel launches as a single game: the CUDA path.
Games that finish are written out and dropped (the batch is compacted); the k x k blocks are padded
with identity up to a common capacity, which doubles when a game needs more. Runs on any torch
device (the tests run it on the CPU against the same oracle as the compiled CPU kernel).
"""

from __future__ import annotations

import time
import torch

from auditor.engine.simplex_types import SimplexOptions, SimplexResult
from auditor.engine.transforms import flip, num_players, subset_sum, superset_sum


__all__ = ["solve"]


def _apply(x: torch.Tensor, size: int) -> torch.Tensor:
    """A x for x over [AND | OR] columns (..., 2 size) -> (..., size)."""
    sums = subset_sum(x.reshape(*x.shape[:-1], 2, size))
    or_part = x[..., size:].sum(dim=-1, keepdim=True) - flip(sums[..., 1, :])
    return sums[..., 0, :] + or_part


def _apply_transpose(y: torch.Tensor) -> torch.Tensor:
    """A^T y over [AND | OR] columns: superset sums, and sum(y) - (subset sums of y)(N \\ S)."""
    return torch.cat([superset_sum(y), y.sum(dim=-1, keepdim=True) - flip(subset_sum(y))], dim=-1)


def _entries(rows: torch.Tensor, columns: torch.Tensor, size: int) -> torch.Tensor:
    """A[rows, columns] as float64: rows (B, L), columns (B, K) -> (B, L, K)."""
    t = rows[:, :, None]
    is_and = columns < size
    s = torch.where(is_and, columns, columns - size)[:, None, :]
    and_hit = (t & s) == s
    or_hit = (t & s) != 0
    return torch.where(is_and[:, None, :], and_hit, or_hit).to(torch.float64)


class _State:
    """The simplex state of the games still running, compacted as games finish."""

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor, capacity: int) -> None:
        batch, size = lo.shape
        device = lo.device
        self.ids = torch.arange(batch, device=device)
        self.lo, self.hi = lo, hi
        self.k = torch.zeros(batch, dtype=torch.long, device=device)
        self.rows = torch.zeros(batch, capacity, dtype=torch.long, device=device)
        self.side = torch.zeros(batch, capacity, dtype=torch.float64, device=device)
        self.columns = torch.zeros(batch, capacity, dtype=torch.long, device=device)
        self.sigma = torch.zeros(batch, capacity, dtype=torch.float64, device=device)
        self.inverse = torch.eye(capacity, dtype=torch.float64, device=device).repeat(batch, 1, 1)
        self.y = torch.zeros(batch, size, dtype=torch.float64, device=device)
        self.g = torch.zeros(batch, 2 * size, dtype=torch.float64, device=device)
        self.tight = torch.zeros(batch, size, dtype=torch.bool, device=device)
        self.basic = torch.zeros(batch, 2 * size, dtype=torch.bool, device=device)
        self.since_refactor = 0

    @property
    def capacity(self) -> int:
        return self.rows.shape[1]

    def select(self, keep: torch.Tensor) -> None:
        for name in ("ids", "lo", "hi", "k", "rows", "side", "columns", "sigma", "inverse", "y", "g", "tight", "basic"):
            setattr(self, name, getattr(self, name)[keep])

    def grow(self) -> None:
        """Double the capacity of the k x k blocks (padding with identity)."""
        old = self.capacity
        new = old * 2
        batch = self.k.shape[0]
        device = self.k.device
        pad = lambda t, value: torch.cat([t, torch.full((batch, new - old), value, dtype=t.dtype, device=device)], 1)  # noqa: E731
        self.rows, self.columns = pad(self.rows, 0), pad(self.columns, 0)
        self.side, self.sigma = pad(self.side, 0.0), pad(self.sigma, 0.0)
        inverse = torch.eye(new, dtype=torch.float64, device=device).repeat(batch, 1, 1)
        inverse[:, :old, :old] = self.inverse
        self.inverse = inverse


def solve(
    values: torch.Tensor,
    tau: torch.Tensor,
    allowed: torch.Tensor,
    costs: torch.Tensor,
    options: SimplexOptions,
) -> SimplexResult:
    """See ``auditor.engine.simplex.solve``; ``allowed`` and ``costs`` live on the games' device."""

    started = time.perf_counter()
    batch, size = values.shape
    num_players(size)
    device = values.device
    max_iterations = options.max_iterations or 20 * size
    lo = values.to(torch.float64) - tau[:, None]
    hi = values.to(torch.float64) + tau[:, None]
    lo[:, 0], hi[:, 0] = -1.0, 1.0  # the empty state: A x = 0 there by construction
    fixed_rows = (hi - lo) <= options.primal_tolerance  # tau = 0: equalities, duals of either sign

    out_and = torch.zeros(batch, size, dtype=torch.float64, device=device)
    out_or = torch.zeros_like(out_and)
    out_y = torch.zeros_like(out_and)
    out_y_perturbed = torch.zeros_like(out_and)
    out_iterations = torch.zeros(batch, dtype=torch.long, device=device)
    out_converged = torch.zeros(batch, dtype=torch.bool, device=device)
    out_dense = torch.zeros(batch, dtype=torch.bool, device=device)
    basis_rows: list[list[int]] = [[] for _ in range(batch)]
    basis_columns: list[list[int]] = [[] for _ in range(batch)]

    state = _State(lo, hi, min(options.initial_capacity, size))
    fixed = fixed_rows
    iteration = 0
    candidates = min(options.pricing_candidates, size - 1)
    while state.ids.numel():
        iteration += 1
        x_basic, x_full, activity, row_infeasibility, column_infeasibility = _primal(state, size)
        worst = torch.maximum(row_infeasibility.amax(dim=1), column_infeasibility.amax(dim=1))
        finished = worst <= options.primal_tolerance
        out_of_budget = iteration > max_iterations or (
            options.time_limit is not None and time.perf_counter() - started > options.time_limit
        )
        # Games leave when solved, when the budget is spent (all of them, unconverged unless solved),
        # or when their basis passes max_basis: a dense optimum, handed back for auditor.engine.interior_point.
        if out_of_budget or options.max_basis is None:
            dense = torch.zeros_like(finished)
        else:
            dense = (state.k > options.max_basis) & ~finished
        leaving = torch.ones_like(finished) if out_of_budget else finished | dense
        if leaving.any():
            out_dense[state.ids[dense]] = True
            _emit(state, leaving, finished, x_full, costs, size, iteration - 1,
                  out_and, out_or, out_y, out_y_perturbed, out_iterations, out_converged, basis_rows, basis_columns)
            keep = ~leaving
            state.select(keep)
            fixed = fixed[keep]
            if not state.ids.numel():
                break
            x_basic, x_full, activity = x_basic[keep], x_full[keep], activity[keep]
            row_infeasibility, column_infeasibility = row_infeasibility[keep], column_infeasibility[keep]
        stuck = _pivot(state, fixed, costs, allowed, size, candidates, options, activity, row_infeasibility,
                       column_infeasibility)
        if stuck.any():  # numerical breakdown (no entering variable): hand the game back unconverged
            _emit(state, stuck, torch.zeros_like(stuck), x_full, costs, size, iteration,
                  out_and, out_or, out_y, out_y_perturbed, out_iterations, out_converged, basis_rows, basis_columns)
            state.select(~stuck)
            fixed = fixed[~stuck]
        state.since_refactor += 1
        if state.since_refactor >= options.refactor_every:
            _refactor(state, costs, size)
    numpy = lambda t: t.cpu().numpy()  # noqa: E731
    return SimplexResult(numpy(out_and), numpy(out_or), numpy(out_y), numpy(out_y_perturbed), numpy(out_iterations),
                         numpy(out_converged), numpy(out_dense), basis_rows, basis_columns)


def _sign(positive: torch.Tensor) -> torch.Tensor:
    """+1.0 where ``positive``, else -1.0, in float64."""
    return positive.to(torch.float64) * 2.0 - 1.0


def _slots(state: _State) -> torch.Tensor:
    """(B, K) bool: which slots of the k x k block are in use."""
    return torch.arange(state.capacity, device=state.k.device)[None, :] < state.k[:, None]


def _primal(state: _State, size: int):
    """Basic values x_C, all row activities, and the primal infeasibilities of rows and columns."""
    active = _slots(state)
    bounds = torch.where(state.side > 0, state.lo.gather(1, state.rows), state.hi.gather(1, state.rows))
    bounds = torch.where(active, bounds, 0.0)
    x_basic = torch.bmm(state.inverse, bounds[:, :, None])[:, :, 0]
    x_full = torch.zeros_like(state.g).scatter_add_(1, state.columns, torch.where(active, x_basic, 0.0))
    activity = _apply(x_full, size)
    row_infeasibility = torch.maximum(state.lo - activity, activity - state.hi)
    row_infeasibility = torch.where(state.tight, 0.0, row_infeasibility)
    row_infeasibility[:, 0] = 0.0
    row_infeasibility = row_infeasibility.clamp(min=0.0)
    # the sign of a basic column is the one its reduced cost fixed (sigma); the other sign is infeasible
    column_infeasibility = torch.where(active, -state.sigma * x_basic, 0.0).clamp(min=0.0)
    return x_basic, x_full, activity, row_infeasibility, column_infeasibility


def _pivot(state, fixed, costs, allowed, size, candidates, options, activity, row_infeasibility,
           column_infeasibility) -> torch.Tensor:
    """One dual simplex iteration for every running game; returns the games that found no pivot."""
    batch = state.k.shape[0]
    device = state.k.device
    arange = torch.arange(batch, device=device)
    active = _slots(state)

    # --- pricing: dual steepest edge on the most infeasible rows, exact weights for basic columns
    top_values, top_rows = torch.topk(row_infeasibility, candidates, dim=1)
    candidate_entries = _entries(top_rows, state.columns, size) * active[:, None, :]  # (B, L, K)
    candidate_products = torch.bmm(candidate_entries, state.inverse)  # a_TC^T B^-1, (B, L, K)
    row_weights = 1.0 + (candidate_products * candidate_products * active[:, None, :]).sum(dim=2)
    row_scores = torch.where(top_values > options.primal_tolerance, top_values * top_values / row_weights, -1.0)
    column_weights = (state.inverse * state.inverse * active[:, None, :]).sum(dim=2).clamp(min=1e-300)
    column_scores = torch.where(column_infeasibility > options.primal_tolerance,
                                column_infeasibility * column_infeasibility / column_weights, -1.0)
    best_row_score, best_candidate = row_scores.max(dim=1)
    best_column_score, leaving_slot = column_scores.max(dim=1)
    row_case = best_row_score >= best_column_score

    leaving_row = top_rows[arange, best_candidate]
    row_products = candidate_products[arange, best_candidate]  # (B, K): a_TC^T B^-1
    row_direction = _sign(state.lo[arange, leaving_row] > activity[arange, leaving_row])
    leaving_sigma = state.sigma[arange, leaving_slot]
    # dy on the tight rows: -dT a_TC^T B^-1 (row case) or -sigma_p (row p of B^-1) (column case)
    dy_tight = torch.where(
        row_case[:, None],
        -row_direction[:, None] * row_products,
        -leaving_sigma[:, None] * state.inverse[arange, leaving_slot],
    )
    dy_tight = torch.where(active, dy_tight, 0.0)
    dy = torch.zeros_like(state.y).scatter_add_(1, state.rows, dy_tight)
    dy[arange, leaving_row] += torch.where(row_case, row_direction, 0.0)
    dg = _apply_transpose(dy)

    # --- ratio test (two passes): columns reaching |g_j| = c_j, tight rows whose dual reaches 0
    tol, piv = options.dual_tolerance, options.pivot_tolerance
    eligible = allowed[None, :] & ~state.basic
    up = eligible & (dg > piv)
    down = eligible & (dg < -piv)
    slack_up = (costs - state.g).clamp(min=0.0)
    slack_down = (costs + state.g).clamp(min=0.0)
    column_ratio = torch.where(up, slack_up / dg, torch.where(down, slack_down / -dg, torch.inf))
    column_harris = torch.where(up, (slack_up + tol) / dg, torch.where(down, (slack_down + tol) / -dg, torch.inf))
    y_tight = state.y.gather(1, state.rows)
    free_row = fixed.gather(1, state.rows)
    blocks_down = active & ~free_row & (state.side > 0) & (dy_tight < -piv)  # y >= 0 rows moving down
    blocks_up = active & ~free_row & (state.side < 0) & (dy_tight > piv)  # y <= 0 rows moving up
    row_room = torch.where(state.side > 0, y_tight, -y_tight).clamp(min=0.0)
    row_pivot = dy_tight.abs()
    row_ratio = torch.where(blocks_down | blocks_up, row_room / row_pivot.clamp(min=1e-300), torch.inf)
    row_harris = torch.where(blocks_down | blocks_up, (row_room + tol) / row_pivot.clamp(min=1e-300), torch.inf)
    # the leaving column may re-enter with the other sign after its reduced cost crossed 2 c_j
    self_ratio = torch.where(row_case, torch.inf, 2.0 * costs[state.columns[arange, leaving_slot]])
    bound = torch.minimum(torch.minimum(column_harris.amin(dim=1), row_harris.amin(dim=1)), self_ratio + tol)
    column_pick = torch.where(column_ratio <= bound[:, None], dg.abs(), -1.0)
    row_pick = torch.where(row_ratio <= bound[:, None], row_pivot, -1.0)
    column_best, entering_column = column_pick.max(dim=1)
    row_best, entering_slot = row_pick.max(dim=1)
    self_pick = torch.where(self_ratio <= bound, 1.0, -1.0)
    column_enters = (column_best >= row_best) & (column_best >= self_pick) & (column_best > 0)
    row_leaves_basis = ~column_enters & (row_best >= self_pick) & (row_best > 0)
    sign_flip = ~column_enters & ~row_leaves_basis & (self_pick > 0)
    stuck = ~(column_enters | row_leaves_basis | sign_flip)  # dual unbounded: only by numerical failure
    theta = torch.where(column_enters, column_ratio[arange, entering_column],
                        torch.where(row_leaves_basis, row_ratio[arange, entering_slot], self_ratio))
    theta = torch.where(stuck, 0.0, theta).clamp(min=0.0)
    state.y += theta[:, None] * dy
    state.g += theta[:, None] * dg

    # --- basis change, case by case
    entering_sign = _sign(dg[arange, entering_column] > 0)
    add = row_case & column_enters & ~stuck
    swap_row = row_case & row_leaves_basis & ~stuck
    swap_column = ~row_case & column_enters & ~stuck
    remove = ~row_case & row_leaves_basis & ~stuck
    flip_sign = ~row_case & sign_flip & ~stuck
    if add.any() and int(state.k[add].max()) >= state.capacity:
        old = state.capacity
        state.grow()
        row_products = torch.cat([row_products, row_products.new_zeros(batch, state.capacity - old)], 1)
    if add.any():
        _add(state, add.nonzero()[:, 0], leaving_row, row_direction, entering_column, entering_sign, row_products, size)
    if swap_row.any():
        _swap_row(state, swap_row.nonzero()[:, 0], entering_slot, leaving_row, row_direction, row_products)
    if swap_column.any():
        _swap_column(state, swap_column.nonzero()[:, 0], leaving_slot, entering_column, entering_sign, size)
    if remove.any():
        _remove(state, remove.nonzero()[:, 0], entering_slot, leaving_slot)
    if flip_sign.any():
        which = flip_sign.nonzero()[:, 0]
        state.sigma[which, leaving_slot[which]] *= -1.0
    return stuck


def _add(state, which, leaving_row, direction, entering_column, entering_sign, row_products, size):
    """Row T becomes tight and column q basic: the k x k block grows by a border."""
    k = state.k[which]
    inverse = state.inverse[which]
    active = _slots(state)[which]
    t, q = leaving_row[which], entering_column[which]
    column_entries = _entries(state.rows[which], q[:, None], size)[:, :, 0] * active  # a_qR
    corner = _entries(t[:, None], q[:, None], size)[:, 0, 0]  # A[T, q]
    z = torch.bmm(inverse, column_entries[:, :, None])[:, :, 0]  # B^-1 a_qR
    w = row_products[which] * active  # a_TC^T B^-1
    row_entries = _entries(t[:, None], state.columns[which], size)[:, 0, :] * active
    schur = corner - (row_entries * z).sum(dim=1)
    inverse = inverse + z[:, :, None] * w[:, None, :] / schur[:, None, None]
    new_column = -z / schur[:, None]
    new_row = -w / schur[:, None]
    local = torch.arange(len(which), device=which.device)
    new_column[local, k] = 1.0 / schur
    new_row[local, k] = 1.0 / schur
    inverse[local, :, k] = new_column
    inverse[local, k, :] = new_row
    state.inverse[which] = inverse
    state.rows[which, k] = t
    state.side[which, k] = direction[which]
    state.columns[which, k] = q
    state.sigma[which, k] = entering_sign[which]
    state.k[which] = k + 1
    state.tight[which, t] = True
    state.basic[which, q] = True


def _swap_row(state, which, slot, leaving_row, direction, row_products):
    """Tight row R_i leaves (its dual reached 0), row T takes its slot: a rank-one row update."""
    i = slot[which]
    local = torch.arange(len(which), device=which.device)
    inverse = state.inverse[which]
    w = row_products[which].clone()  # a_TC^T B^-1
    pivot = w[local, i]
    w[local, i] -= 1.0
    inverse = inverse - inverse[local, :, i][:, :, None] * w[:, None, :] / pivot[:, None, None]
    state.inverse[which] = inverse
    old = state.rows[which, i]
    state.tight[which, old] = False
    state.y[which, old] = 0.0
    t = leaving_row[which]
    state.rows[which, i] = t
    state.side[which, i] = direction[which]
    state.tight[which, t] = True


def _swap_column(state, which, slot, entering_column, entering_sign, size):
    """Basic column C_p leaves (its value has the wrong sign), column q takes its slot."""
    p = slot[which]
    local = torch.arange(len(which), device=which.device)
    inverse = state.inverse[which]
    active = _slots(state)[which]
    q = entering_column[which]
    column_entries = _entries(state.rows[which], q[:, None], size)[:, :, 0] * active
    z = torch.bmm(inverse, column_entries[:, :, None])[:, :, 0]
    pivot = z[local, p]
    z[local, p] -= 1.0
    inverse = inverse - z[:, :, None] * inverse[local, p, :][:, None, :] / pivot[:, None, None]
    state.inverse[which] = inverse
    old = state.columns[which, p]
    state.basic[which, old] = False
    state.columns[which, p] = q
    state.sigma[which, p] = entering_sign[which]
    state.basic[which, q] = True


def _remove(state, which, row_slot, column_slot):
    """Tight row R_i and basic column C_p both leave: move them to the last slot, then drop it."""
    local = torch.arange(len(which), device=which.device)
    i, p = row_slot[which], column_slot[which]
    last = state.k[which] - 1
    old_row = state.rows[which, i]
    old_column = state.columns[which, p]
    state.tight[which, old_row] = False
    state.y[which, old_row] = 0.0
    state.basic[which, old_column] = False
    inverse = state.inverse[which]
    # swapping rows i <-> last of the block swaps columns of the inverse; columns p <-> last, rows
    for names, a, b in ((("rows", "side"), i, last), (("columns", "sigma"), p, last)):
        for name in names:
            tensor = getattr(state, name)
            first, second = tensor[which, a].clone(), tensor[which, b].clone()
            tensor[which, a], tensor[which, b] = second, first
    column_i, column_last = inverse[local, :, i].clone(), inverse[local, :, last].clone()
    inverse[local, :, i], inverse[local, :, last] = column_last, column_i
    row_p, row_last = inverse[local, p, :].clone(), inverse[local, last, :].clone()
    inverse[local, p, :], inverse[local, last, :] = row_last, row_p
    corner = inverse[local, last, last]
    column = inverse[local, :, last].clone()
    row = inverse[local, last, :].clone()
    column[local, last] = 0.0
    row[local, last] = 0.0
    inverse = inverse - column[:, :, None] * row[:, None, :] / corner[:, None, None]
    inverse[local, :, last] = 0.0
    inverse[local, last, :] = 0.0
    inverse[local, last, last] = 1.0
    state.inverse[which] = inverse
    state.rows[which, last] = 0
    state.columns[which, last] = 0
    state.side[which, last] = 0.0
    state.sigma[which, last] = 0.0
    state.k[which] = last


def _block(state: _State, size: int) -> torch.Tensor:
    active = _slots(state)
    entries = _entries(state.rows, state.columns, size) * active[:, :, None] * active[:, None, :]
    identity = torch.eye(state.capacity, dtype=torch.float64, device=state.k.device)[None]
    return entries + identity * (~active)[:, :, None]


def _refactor(state: _State, costs: torch.Tensor, size: int) -> None:
    """Invert the k x k block afresh and recompute y and A^T y from it (removes update drift)."""
    state.since_refactor = 0
    if not state.ids.numel():
        return
    state.inverse = torch.linalg.inv(_block(state, size))
    state.y = _duals(state, costs)
    state.g = _apply_transpose(state.y)


def _duals(state: _State, costs: torch.Tensor) -> torch.Tensor:
    """y on the tight rows from A[R, C]^T y_R = sigma_C c_C, scattered to all rows."""
    active = _slots(state)
    target = torch.where(active, state.sigma * costs[state.columns], 0.0)
    y_tight = torch.bmm(target[:, None, :], state.inverse)[:, 0, :]
    return torch.zeros_like(state.y).scatter_add_(1, state.rows, torch.where(active, y_tight, 0.0))


def _emit(state, leaving, converged, x_full, costs, size, iterations,
          out_and, out_or, out_y, out_y_perturbed, out_iterations, out_converged, basis_rows, basis_columns):
    """Write the games in ``leaving`` to the outputs."""
    if not leaving.any():
        return
    ids = state.ids[leaving]
    out_and[ids] = x_full[leaving, :size]
    out_or[ids] = x_full[leaving, size:]
    out_y_perturbed[ids] = state.y[leaving]
    true_costs = torch.ones_like(costs)
    # y with the true costs from the same basis (a fresh inverse: no update drift)
    sub = _State.__new__(_State)
    for name in ("ids", "lo", "hi", "k", "rows", "side", "columns", "sigma", "y", "g", "tight", "basic"):
        setattr(sub, name, getattr(state, name)[leaving])
    sub.inverse = torch.linalg.inv(_block(sub, size))
    out_y[ids] = _duals(sub, true_costs)
    out_iterations[ids] = iterations
    out_converged[ids] = converged[leaving]
    rows, columns, k = state.rows[leaving].tolist(), state.columns[leaving].tolist(), state.k[leaving].tolist()
    for game, r, c, count in zip(ids.tolist(), rows, columns, k):
        basis_rows[game] = r[:count]
        basis_columns[game] = c[:count]
