"""The dual simplex of ``auditor.engine.simplex`` as compiled scalar code for the CPU (numba).

Why a compiled kernel: one iteration touches O(n 2^n + k^2) numbers (about 30k at n = 10), which
compiled loops do in tens of microseconds, while the same iteration as tensor operations costs a
few hundred dispatches of several microseconds each on tensors this small. The kernel releases
the GIL, so a batch runs its games in parallel on a pool of Python threads (``auditor.engine.simplex``),
and a Python timer can stop it through the ``stop`` flag.

Conventions are those of ``auditor.engine.simplex``: columns ``0 .. 2^n - 1`` are the AND sets,
``2^n + S`` the OR set S; rows are the states T (row 0, the empty state, is never constrained).
The first call compiles the kernel (about 15 s, once: numba caches it next to this file).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from auditor.engine.simplex_basis import (
    JIT_OPTIONS,
    basic_activity,
    duals_from_basis,
    entry,
    grow_matrix,
    grow_vector,
    invert_block,
    multiply,
    transpose_apply,
)

CONVERGED, ITERATION_LIMIT, STOPPED, BREAKDOWN, DENSE = 0, 1, 2, 3, 4


@nb.njit(**JIT_OPTIONS)
def solve_one(
    values, tau, allowed, costs, primal_tolerance, dual_tolerance, pivot_tolerance, candidates,
    refactor_every, max_iterations, max_basis, stop, x_out, y_out, y_perturbed_out, basis_out,
):
    """Dual simplex for one scaled game. Returns (status, iterations, k); basis_out[:k] holds the
    tight rows and basis_out[k:2k] the basic columns.

    Status DENSE: the basis grew past ``max_basis`` rows, so the optimum is dense and the caller
    solves the game by other means (``auditor.engine.interior_point``); x_out and y_out are then left 0
    (no final refactorisation is spent on a basis that is thrown away).

    Pricing is dual steepest edge restricted to the ``candidates`` most infeasible rows (measured:
    fewer iterations than steepest edge over all rows, which here often prefers rows of small
    weight and small infeasibility, and k grew to 20 times the optimum's support on an n = 12
    game). A basic slack's weight ||row of B^-1||^2 is kept up to date for every row by the
    Forrest-Goldfarb formulas (two FTRANs per pivot: O(k^2) solves and O(n 2^n) transforms);
    a basic column's weight is computed exactly (O(k) each).
    """
    size = values.shape[0]
    n = 0
    while (1 << n) < size:
        n += 1
    columns_total = 2 * size
    lo = values - tau
    hi = values + tau
    fixed = tau <= primal_tolerance

    capacity = 64 if size > 64 else size
    rows = np.zeros(capacity, dtype=np.int64)
    columns = np.zeros(capacity, dtype=np.int64)
    side = np.zeros(capacity)
    sigma = np.zeros(capacity)
    inverse = np.zeros((capacity, capacity))
    bounds = np.zeros(capacity)
    x_basic = np.zeros(capacity)
    u = np.zeros(capacity)  # the leaving row of B^-1 on the tight rows (BTRAN)
    dy_tight = np.zeros(capacity)
    a_column = np.zeros(capacity)
    z = np.zeros(capacity)  # B^-1 times the entering column (FTRAN)
    u_ftran = np.zeros(capacity)  # B^-1 u, for the weight update
    tight = np.zeros(size, dtype=np.bool_)
    basic = np.zeros(columns_total, dtype=np.bool_)
    row_weight = np.ones(size)
    y = np.zeros(size)
    g = np.zeros(columns_total)
    dg = np.zeros(columns_total)
    dy = np.zeros(size)
    activity = np.zeros(size)
    z_activity = np.zeros(size)
    u_activity = np.zeros(size)
    and_part = np.zeros(size)
    or_part = np.zeros(size)
    work = np.zeros(size)
    candidate_rows = np.zeros(candidates, dtype=np.int64)
    candidate_values = np.zeros(candidates)

    k = 0
    status = ITERATION_LIMIT
    iteration = 0
    since_refactor = 0
    while iteration < max_iterations:
        if stop[0] != 0:
            status = STOPPED
            break
        # --- primal: basic values and the activity of every row
        for i in range(k):
            bounds[i] = lo[rows[i]] if side[i] > 0 else hi[rows[i]]
        multiply(inverse, bounds, k, x_basic)
        basic_activity(x_basic, columns, k, size, n, and_part, or_part, activity)

        # --- pricing (dual steepest edge): the largest infeasibility^2 / weight
        best_score = -1.0
        row_case = True
        leaving_row = -1
        leaving_slot = -1
        found = 0
        for t in range(1, size):
            if tight[t]:
                continue
            excess = lo[t] - activity[t]
            if activity[t] - hi[t] > excess:
                excess = activity[t] - hi[t]
            if excess <= primal_tolerance:
                continue
            # keep the `candidates` largest excesses, sorted descending
            if found < candidates:
                position = found
                found += 1
            elif excess > candidate_values[candidates - 1]:
                position = candidates - 1
            else:
                continue
            while position > 0 and candidate_values[position - 1] < excess:
                candidate_values[position] = candidate_values[position - 1]
                candidate_rows[position] = candidate_rows[position - 1]
                position -= 1
            candidate_values[position] = excess
            candidate_rows[position] = t
        for c in range(found):
            t = candidate_rows[c]
            score = candidate_values[c] * candidate_values[c] / row_weight[t]
            if score > best_score:
                best_score = score
                leaving_row = t
        for i in range(k):
            excess = -sigma[i] * x_basic[i]
            if excess <= primal_tolerance:
                continue
            weight = 0.0
            for m in range(k):
                weight += inverse[i, m] * inverse[i, m]
            score = excess * excess / weight
            if score > best_score:
                best_score = score
                row_case = False
                leaving_slot = i
        if best_score < 0.0:
            status = CONVERGED
            break
        if k > max_basis:
            status = DENSE
            break
        if not row_case:
            leaving_row = -1  # a basic column won over the best row
        iteration += 1

        # --- the leaving row of B^-1 (u on the tight rows), dy, and the pivot row dg = A^T dy
        dy[:] = 0.0
        direction = 0.0
        if row_case:
            # u_R = A[T, C] B^-1: the sum of the rows of B^-1 whose basic column meets T
            for m in range(k):
                u[m] = 0.0
            for j in range(k):
                if entry(leaving_row, columns[j], size) != 0.0:
                    for m in range(k):
                        u[m] += inverse[j, m]
            leaving_weight = 1.0
            direction = 1.0 if lo[leaving_row] > activity[leaving_row] else -1.0
            dy[leaving_row] = direction
            scale = -direction
        else:
            for m in range(k):
                u[m] = inverse[leaving_slot, m]
            leaving_weight = 0.0
            scale = -sigma[leaving_slot]
        for m in range(k):
            leaving_weight += u[m] * u[m]
            dy_tight[m] = scale * u[m]
            dy[rows[m]] = dy_tight[m]
        transpose_apply(dy, n, work, dg)

        # --- two-pass (Harris) ratio test: the largest pivot among the candidates whose ratio is
        # within the tolerance of the smallest (columns reaching |g_j| = c_j, tight rows whose dual
        # reaches 0, and the leaving column re-entering with the other sign)
        bound = np.inf
        for j in range(columns_total):
            if not allowed[j] or basic[j]:
                continue
            d = dg[j]
            if d > pivot_tolerance:
                room = costs[j] - g[j]
                ratio = ((room if room > 0.0 else 0.0) + dual_tolerance) / d
            elif d < -pivot_tolerance:
                room = costs[j] + g[j]
                ratio = ((room if room > 0.0 else 0.0) + dual_tolerance) / -d
            else:
                continue
            if ratio < bound:
                bound = ratio
        for i in range(k):
            if fixed:
                break
            d = dy_tight[i]
            room = y[rows[i]] if side[i] > 0 else -y[rows[i]]
            room = room if room > 0.0 else 0.0
            if side[i] > 0 and d < -pivot_tolerance:
                ratio = (room + dual_tolerance) / -d
            elif side[i] < 0 and d > pivot_tolerance:
                ratio = (room + dual_tolerance) / d
            else:
                continue
            if ratio < bound:
                bound = ratio
        self_ratio = np.inf
        if not row_case:
            self_ratio = 2.0 * costs[columns[leaving_slot]]
            if self_ratio + dual_tolerance < bound:
                bound = self_ratio + dual_tolerance
        if bound == np.inf:
            status = BREAKDOWN
            break
        entering_column = -1
        entering_slot = -1
        best_pivot = 0.0
        theta = 0.0
        for j in range(columns_total):
            if not allowed[j] or basic[j]:
                continue
            d = dg[j]
            if d > pivot_tolerance:
                room = costs[j] - g[j]
                ratio = (room if room > 0.0 else 0.0) / d
            elif d < -pivot_tolerance:
                room = costs[j] + g[j]
                ratio = (room if room > 0.0 else 0.0) / -d
            else:
                continue
            if ratio <= bound and abs(d) > best_pivot:
                best_pivot = abs(d)
                entering_column = j
                theta = ratio
        for i in range(k):
            if fixed:
                break
            d = dy_tight[i]
            room = y[rows[i]] if side[i] > 0 else -y[rows[i]]
            room = room if room > 0.0 else 0.0
            if (side[i] > 0 and d < -pivot_tolerance) or (side[i] < 0 and d > pivot_tolerance):
                ratio = room / abs(d)
                if ratio <= bound and abs(d) > best_pivot:
                    best_pivot = abs(d)
                    entering_slot = i
                    entering_column = -1
                    theta = ratio
        sign_flip = False
        if not row_case and self_ratio <= bound and 1.0 > best_pivot:
            sign_flip = True
            theta = self_ratio
            entering_column = -1
            entering_slot = -1
        if entering_column < 0 and entering_slot < 0 and not sign_flip:
            status = BREAKDOWN
            break

        # --- dual step
        for i in range(k):
            y[rows[i]] += theta * dy_tight[i]
        if row_case:
            y[leaving_row] += theta * direction
        for j in range(columns_total):
            g[j] += theta * dg[j]

        # --- weights: FTRAN the entering column (z) and u, price both over all rows, update
        if not sign_flip:
            if entering_column >= 0:
                for i in range(k):
                    a_column[i] = entry(rows[i], entering_column, size)
                multiply(inverse, a_column, k, z)
            else:
                for i in range(k):
                    z[i] = -inverse[i, entering_slot]  # the slack of a tight row: column -e_i
            multiply(inverse, u, k, u_ftran)
            basic_activity(z, columns, k, size, n, and_part, or_part, z_activity)
            basic_activity(u_ftran, columns, k, size, n, and_part, or_part, u_activity)
            if row_case:
                pivot = z_activity[leaving_row]
                if entering_column >= 0:
                    pivot -= entry(leaving_row, entering_column, size)
            else:
                pivot = z[leaving_slot]
            if abs(pivot) < 1e-14:
                status = BREAKDOWN
                break
            for t in range(1, size):
                if tight[t] or t == leaving_row:
                    continue
                alpha = z_activity[t]
                if entering_column >= 0:
                    alpha -= entry(t, entering_column, size)
                if alpha == 0.0:
                    continue
                ratio = alpha / pivot
                weight = row_weight[t] - 2.0 * ratio * u_activity[t] + ratio * ratio * leaving_weight
                row_weight[t] = weight if weight > 1.0 else 1.0  # a basic slack's row has a unit entry
            if entering_slot >= 0:
                entering_weight = leaving_weight / (pivot * pivot)
                row_weight[rows[entering_slot]] = entering_weight if entering_weight > 1.0 else 1.0

        # --- basis change
        if sign_flip:
            sigma[leaving_slot] = -sigma[leaving_slot]
        elif entering_column >= 0:
            entering_sign = 1.0 if dg[entering_column] > 0 else -1.0
            if row_case:
                # border: new row T (its entries on C are u's defining row) and new column q
                if k == capacity:
                    capacity = min(2 * capacity, size)
                    inverse = grow_matrix(inverse, capacity)
                    rows = grow_vector(rows, capacity)
                    columns = grow_vector(columns, capacity)
                    side = grow_vector(side, capacity)
                    sigma = grow_vector(sigma, capacity)
                    u = grow_vector(u, capacity)
                    z = grow_vector(z, capacity)
                    dy_tight = grow_vector(dy_tight, capacity)
                    bounds = np.zeros(capacity)
                    x_basic = np.zeros(capacity)
                    a_column = np.zeros(capacity)
                    u_ftran = np.zeros(capacity)
                schur = -pivot  # A[T, q] - A[T, C] B^-1 a_qR
                for i in range(k):
                    factor = z[i] / schur
                    for m in range(k):
                        inverse[i, m] += factor * u[m]
                for i in range(k):
                    inverse[i, k] = -z[i] / schur
                    inverse[k, i] = -u[i] / schur
                inverse[k, k] = 1.0 / schur
                rows[k] = leaving_row
                side[k] = direction
                columns[k] = entering_column
                sigma[k] = entering_sign
                tight[leaving_row] = True
                basic[entering_column] = True
                k += 1
            else:
                # basic column C_p leaves, q takes its slot: rank-one column update
                p = leaving_slot
                z[p] -= 1.0
                for i in range(k):
                    factor = z[i] / pivot
                    for m in range(k):
                        inverse[i, m] -= factor * u[m]
                basic[columns[p]] = False
                columns[p] = entering_column
                sigma[p] = entering_sign
                basic[entering_column] = True
        else:
            slot = entering_slot
            old_row = rows[slot]
            tight[old_row] = False
            y[old_row] = 0.0
            if row_case:
                # tight row R_i leaves, row T takes its slot: rank-one row update
                row_pivot = u[slot]
                u[slot] -= 1.0
                for i in range(k):
                    a_column[i] = inverse[i, slot]
                for i in range(k):
                    factor = a_column[i] / row_pivot
                    for m in range(k):
                        inverse[i, m] -= factor * u[m]
                rows[slot] = leaving_row
                side[slot] = direction
                tight[leaving_row] = True
            else:
                # tight row R_i and basic column C_p leave together: move both to the last slot
                p = leaving_slot
                last = k - 1
                basic[columns[p]] = False
                rows[slot], rows[last] = rows[last], rows[slot]
                side[slot], side[last] = side[last], side[slot]
                columns[p], columns[last] = columns[last], columns[p]
                sigma[p], sigma[last] = sigma[last], sigma[p]
                for i in range(k):
                    inverse[i, slot], inverse[i, last] = inverse[i, last], inverse[i, slot]
                for m in range(k):
                    inverse[p, m], inverse[last, m] = inverse[last, m], inverse[p, m]
                corner = inverse[last, last]
                for i in range(last):
                    factor = inverse[i, last] / corner
                    for m in range(last):
                        inverse[i, m] -= factor * inverse[last, m]
                for i in range(k):
                    inverse[i, last] = 0.0
                    inverse[last, i] = 0.0
                rows[last] = 0
                columns[last] = 0
                side[last] = 0.0
                sigma[last] = 0.0
                k -= 1

        since_refactor += 1
        if since_refactor >= refactor_every and since_refactor >= k:  # O(k^2) per pivot, amortised
            since_refactor = 0
            if not invert_block(rows, columns, k, size, inverse):
                status = BREAKDOWN
                break
            duals_from_basis(rows, columns, sigma, k, costs, inverse, y)
            transpose_apply(y, n, work, g)

    # --- outputs: the basic point, the perturbed duals, and the duals of the true costs
    x_out[:] = 0.0
    y_out[:] = 0.0
    for i in range(k):
        bounds[i] = lo[rows[i]] if side[i] > 0 else hi[rows[i]]
    if status == DENSE:
        pass
    elif invert_block(rows, columns, k, size, inverse):
        multiply(inverse, bounds, k, x_basic)
        for i in range(k):
            x_out[columns[i]] += x_basic[i]
        ones = np.ones(columns_total)
        duals_from_basis(rows, columns, sigma, k, ones, inverse, y_out)
    else:
        status = BREAKDOWN
    y_perturbed_out[:] = y
    for i in range(k):
        basis_out[i] = rows[i]
        basis_out[k + i] = columns[i]
    return status, iteration, k
