"""Fragility of a model's masked-prompt game under small parameter noise (an experimental overfitting figure).

Why: the order-shape overfitting score (``metrics.fit_overfitting``) saturates on heavily overfit
models and cannot see memorised low-order lookups (docs/testbed.md). Cheng et al. (2025) explain
the decay of generalizable interactions by data and parameter uncertainty: interactions that
survive a perturbation of the parameters are the ones the model can rely on beyond its training
set, and interactions fitted to particular training examples (noise, memorised lookups) sit where
the loss is sharp and move with the parameters. So we perturb every parameter tensor a little
(Gaussian noise with a standard deviation of ``relative_sigma`` times the tensor's own), score the
same 2^n masked prompts on the same answer, and measure how much of the game moved:

    fragility = || dv - mean(dv) || / || v - mean(v) ||   over all 2^n masked prompts,

dv = v(perturbed) - v(model). The game determines its interactions linearly (every Harsanyi
dividend is a signed sum of v), so this is the relative change of the interactions the audit
reports; the means are removed because a shift of every state moves no interaction (only the empty
set's value). Over a window of prompts we take the median: a few prompts whose answer barely
depends on the facts (||v - mean v|| near zero) would dominate a ratio of sums.

This is measured by ``testbed validate`` next to the acceptance figures (it ranks the overfit family
where the order-shape score does not); it is not yet a production metric. Production use would
need the perturbation without a second copy of the weights (e.g. seeded low-rank noise added by
forward hooks), since the auditor shares the served model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

DEFAULT_RELATIVE_SIGMA = 0.05
DEFAULT_NOISE_SEED = 0


def perturbed_copy(model: torch.nn.Module, relative_sigma: float = DEFAULT_RELATIVE_SIGMA,
                   seed: int = DEFAULT_NOISE_SEED) -> torch.nn.Module:
    """A copy of ``model`` with every floating-point parameter tensor p replaced by p + N(0, (sigma * std(p))^2).

    The noise is drawn on the CPU from one seeded generator in parameter order, so the same model,
    sigma and seed give the same copy on any device. The model itself is not touched. Tensors of
    one element (no spread to scale by) are left as they are.
    """
    if not relative_sigma >= 0:
        raise ValueError(f"relative_sigma must be >= 0, got {relative_sigma}")
    noisy = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in noisy.parameters():
            if not parameter.is_floating_point() or parameter.numel() < 2:
                continue
            scale = relative_sigma * float(parameter.detach().float().std())
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32) * scale
            parameter.add_(noise.to(device=parameter.device, dtype=parameter.dtype))
    return noisy


def game_fragility(values: np.ndarray | torch.Tensor, perturbed_values: np.ndarray | torch.Tensor) -> float | None:
    """|| dv - mean(dv) || / || v - mean(v) || over the game's states; None for a constant game."""
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    w = np.asarray(perturbed_values.detach().cpu() if isinstance(perturbed_values, torch.Tensor)
                   else perturbed_values, dtype=np.float64)
    if v.shape != w.shape:
        raise ValueError(f"games of different shapes: {v.shape} and {w.shape}")
    spread = float(np.linalg.norm(v - v.mean()))
    if spread == 0.0:
        return None
    delta = w - v
    return float(np.linalg.norm(delta - delta.mean())) / spread


def window_fragility(per_prompt: Sequence[float | None]) -> float | None:
    """Median fragility over a window of prompts (prompts with a constant game left out)."""
    finite = [value for value in per_prompt if value is not None and np.isfinite(value)]
    return float(np.median(finite)) if finite else None
