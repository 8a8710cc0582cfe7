"""The dual simplex's options and result, shared by the dispatcher and both kernels.

They live apart from ``auditor.engine.simplex`` (the dispatcher) so that the kernels
(``simplex_cpu``, ``simplex_tensor``) can return a result without importing the module that imports
them: the dependency runs one way, dispatcher -> kernels -> these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["SimplexOptions", "SimplexResult"]


@dataclass(frozen=True)
class SimplexOptions:
    """Tolerances are on the solver's scaled problem (max |v| = 1)."""

    primal_tolerance: float = 1e-9
    dual_tolerance: float = 1e-9
    pivot_tolerance: float = 1e-9
    perturbation: float = 1e-7
    pricing_candidates: int = 32
    refactor_every: int = 64
    max_iterations: int | None = None  # default: 20 * 2^n per game
    time_limit: float | None = None  # seconds for the whole batch
    initial_capacity: int = 32  # tensor path: starting size of the k x k blocks
    max_basis: int | None = None  # hand a game back (``dense``) once its basis has more tight rows
    backend: Literal["auto", "compiled", "tensor"] = "auto"  # auto: tensor on CUDA, compiled on CPU


@dataclass
class SimplexResult:
    """Per game of the batch; vectors are float64 numpy arrays in the scaled units."""

    and_terms: np.ndarray  # (B, 2^n)
    or_terms: np.ndarray  # (B, 2^n)
    duals: np.ndarray  # (B, 2^n): y from the final basis with the true costs
    perturbed_duals: np.ndarray  # (B, 2^n): y of the perturbed problem, dual feasible for it
    iterations: np.ndarray  # (B,) int
    converged: np.ndarray  # (B,) bool: primal feasible within tolerance at a dual feasible basis
    dense: np.ndarray  # (B,) bool: stopped because the basis passed ``max_basis`` (x, y not meaningful)
    basis_rows: list[list[int]] = field(default_factory=list)  # tight rows of the final basis
    basis_columns: list[list[int]] = field(default_factory=list)  # its columns (OR set S as 2^n + S)
