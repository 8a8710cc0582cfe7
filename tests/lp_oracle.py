"""Independent oracle: the AND-OR split written out as a dense LP and solved by scipy's HiGHS.

Built from the definitions (indicator matrices over subsets), sharing no code with auditor.engine.extraction,
so agreement of the optima is evidence for both the formulation and the solver.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog


def dense_lp_optimum(values: np.ndarray, qthres: float, mode: str = "and-or") -> float:
    """Optimal ||I_and||_1 + ||I_or||_1 by a generic LP over the explicit constraint matrix."""
    size = len(values)
    v = np.asarray(values, dtype=np.float64) - values[0]
    tau = qthres * abs(v[-1])
    states = np.arange(1, size)  # non-empty T
    and_sets = np.arange(1, size)
    columns = [((states[:, None] & and_sets[None, :]) == and_sets[None, :]).astype(float)]
    if mode == "and-or":
        or_sets = np.array([s for s in range(1, size) if bin(s).count("1") >= 2])
        columns.append(((states[:, None] & or_sets[None, :]) != 0).astype(float))
    matrix = np.hstack(columns)
    k = matrix.shape[1]
    # x = x_plus - x_minus, both >= 0
    a_ub = np.vstack([np.hstack([matrix, -matrix]), np.hstack([-matrix, matrix])])
    b_ub = np.concatenate([v[1:] + tau, -(v[1:] - tau)])
    result = linprog(np.ones(2 * k), A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
    assert result.status == 0, result.message
    return float(result.fun)
