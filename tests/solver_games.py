"""Games the solver tests share (seeded, so every test sees the same values)."""

from __future__ import annotations

import numpy as np


def lm_like_game(n: int, seed: int) -> np.ndarray:
    """A few random AND/OR terms of low order with decaying magnitudes, an offset, and noise."""
    rng = np.random.default_rng(seed)
    index = np.arange(1 << n)
    values = np.full(1 << n, rng.normal())
    for k in range(3 * n):
        players = rng.choice(n, size=int(rng.integers(1, 4)), replace=False)
        mask = int(sum(1 << int(p) for p in players))
        hit = (index & mask) == mask if rng.random() < 0.6 else (index & mask) != 0
        values += 2 * 0.85**k * rng.choice([-1.0, 1.0]) * hit
    return values + rng.normal(0.0, 0.01, 1 << n)
