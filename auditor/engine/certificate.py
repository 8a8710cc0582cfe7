"""Bounds on the AND-OR split LP's optimum from any primal and any dual point.

Whatever method produced a point, this is where it is judged: a result is reported with the
objective of a primal point made exactly feasible and the bound of a dual point scaled into the
dual feasible set, so ``gap = (P - D) / P`` holds by weak duality alone, never by trusting a
solver's own status. Everything works on batches ``(B, 2^n)`` of the solver's scaled games.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from auditor.engine.transforms import flip, subset_mobius, subset_sum, superset_sum

__all__ = ["Certificate", "admissible_masks", "apply_or", "certify"]


def apply_or(b: torch.Tensor) -> torch.Tensor:
    """(W b)(T) = sum over S meeting T of b(S) = sum(b) - sum over S inside N \\ T of b(S).

    W is symmetric in its set arguments, so this is also its adjoint.
    """
    return b.sum(dim=-1, keepdim=True) - flip(subset_sum(b))


def admissible_masks(n: int, mode: str, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of admissible AND columns (non-empty sets) and OR columns (order >= 2; none for "and")."""
    index = torch.arange(1 << n, device=device)
    and_ok = index != 0
    or_ok = (index & (index - 1)) != 0 if mode == "and-or" else torch.zeros_like(and_ok)
    return and_ok, or_ok


@dataclass
class Certificate:
    and_terms: torch.Tensor  # (B, 2^n) primal, made exactly feasible
    or_terms: torch.Tensor
    primal: torch.Tensor  # (B,) objective of that point: an upper bound on the optimum
    dual: torch.Tensor  # (B,) a lower bound on the optimum
    row_violation: torch.Tensor  # (B, 2^n): |residual| - tau of the point as given (> 0: violated)
    column_violation: torch.Tensor  # (B, 2^(n+1)): |A^T y| - 1 over [AND | OR] columns

    @property
    def gap(self) -> torch.Tensor:
        return (self.primal - self.dual).clamp(min=0.0) / self.primal.clamp(min=1e-300)


def certify(
    values: torch.Tensor,
    tau: torch.Tensor,
    and_terms: torch.Tensor,
    or_terms: torch.Tensor,
    duals: torch.Tensor,
    and_ok: torch.Tensor,
    or_ok: torch.Tensor,
) -> Certificate:
    """Price the full LP at a point and bound its optimum from both sides.

    The primal point is made exactly feasible by moving any excess residual into AND terms through
    the Moebius transform (Z(a - M e) = Z a - e); the dual vector y is divided by max |A^T y| (at
    least 1), which puts it in the dual feasible set, and its objective v.y - tau ||y||_1 is then a
    lower bound.
    """
    residual = subset_sum(and_terms) + apply_or(or_terms) - values
    residual[:, 0] = 0.0
    box = tau[:, None]
    row_violation = residual.abs() - box
    excess = residual - residual.clamp(min=-box, max=box)
    feasible_and = and_terms - subset_mobius(excess)
    primal = feasible_and.abs().sum(dim=-1) + or_terms.abs().sum(dim=-1)

    pricing_and = torch.where(and_ok, superset_sum(duals).abs(), 0.0)
    pricing_or = torch.where(or_ok, apply_or(duals).abs(), 0.0)
    worst = torch.maximum(pricing_and.amax(dim=-1), pricing_or.amax(dim=-1)).clamp(min=1.0)
    dual = ((values * duals).sum(dim=-1) - tau * duals.abs().sum(dim=-1)) / worst
    column_violation = torch.cat([pricing_and, pricing_or], dim=-1) - 1.0
    return Certificate(feasible_and, or_terms, primal, dual, row_violation, column_violation)
