"""The benchmark games: 2^n outputs in binary order (bit i of an index = player i), float64 numpy.

- ``planted``: the issue's planted game v = 3[x0 and x1] + 2[x2 or x3] - 1.5[x4 and x5 and x6]
  + 0.5[x7] + N(0, 0.02^2), extended to n >= 8 players; players 8..n-1 are inactive (they only see
  the noise). Its optimum is sparse: the four planted terms plus what the noise forces.
- ``lm``: a harder "LM-like" sparse game: ~30 random AND/OR terms of orders 1-5 (low orders more
  likely, as in the decay-shaped order profile of trained models), magnitudes decaying with rank and
  random signs, a non-zero v(empty) (an LM's log-odds with every player masked) and
  N(0, (0.01 scale)^2) noise on every output.
- ``iid``: i.i.d. N(0, 1) outputs: no structure at all, the optimum has ~2^(n-1) non-zero terms. The
  solver's worst case, not a realistic game.

Every generator is deterministic in (n, seed); samples of a batch use seeds seed, seed + 1, ...
"""

from __future__ import annotations

import numpy as np

__all__ = ["GAMES", "planted", "lm_like", "iid", "make_game", "make_batch"]


def _bits(n: int) -> np.ndarray:
    """(2^n, n) 0/1 matrix: row T, column i = [i in T]."""
    index = np.arange(1 << n, dtype=np.int64)
    return ((index[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)


def planted(n: int = 8, seed: int = 0, noise: float = 0.02) -> np.ndarray:
    """3[x0 and x1] + 2[x2 or x3] - 1.5[x4 and x5 and x6] + 0.5[x7] + N(0, noise^2); needs n >= 8."""
    if n < 8:
        raise ValueError(f"the planted game needs n >= 8 players, got {n}")
    x = _bits(n)
    clean = (
        3.0 * (x[:, 0] & x[:, 1])
        + 2.0 * (x[:, 2] | x[:, 3])
        - 1.5 * (x[:, 4] & x[:, 5] & x[:, 6])
        + 0.5 * x[:, 7]
    ).astype(np.float64)
    return clean + np.random.default_rng(seed).normal(0.0, noise, 1 << n)


def lm_like(n: int = 10, seed: int = 0, terms: int = 30, scale: float = 1.0, max_order: int = 5) -> np.ndarray:
    """~``terms`` random AND/OR terms of orders 1..max_order with decaying magnitudes, plus noise.

    Term k (k = 0, 1, ...) has magnitude 2 scale 0.85^k U(0.7, 1.3) and a random sign; its order m
    is drawn with probability proportional to 0.55^m (orders 1-2 dominate, order 5 is rare), its
    players uniformly among the n; it is an AND term with probability 0.6, else an OR term. Duplicates
    simply add up. v(empty) gets an offset N(0, scale^2) (games are not normalised), and every output
    i.i.d. noise of standard deviation 0.01 scale.
    """
    rng = np.random.default_rng(10_000 + seed)
    x = _bits(n)
    top = min(max_order, n)
    orders = np.arange(1, top + 1)
    weights = 0.55 ** orders
    weights /= weights.sum()
    values = np.full(1 << n, rng.normal(0.0, scale))
    for k in range(terms):
        order = int(rng.choice(orders, p=weights))
        players = rng.choice(n, size=order, replace=False)
        magnitude = 2.0 * scale * 0.85**k * rng.uniform(0.7, 1.3) * rng.choice([-1.0, 1.0])
        hit = x[:, players].all(axis=1) if rng.random() < 0.6 else x[:, players].any(axis=1)
        values += magnitude * hit
    return values + rng.normal(0.0, 0.01 * scale, 1 << n)


def iid(n: int = 10, seed: int = 0) -> np.ndarray:
    """i.i.d. N(0, 1) outputs: the dense worst case."""
    return np.random.default_rng(20_000 + seed).normal(0.0, 1.0, 1 << n)


GAMES = {"planted": planted, "lm": lm_like, "iid": iid}


def make_game(kind: str, n: int, seed: int = 0) -> np.ndarray:
    """One game of the named kind ('planted', 'lm', 'iid')."""
    return GAMES[kind](n=n, seed=seed)


def make_batch(kind: str, n: int, batch: int, seed: int = 0) -> np.ndarray:
    """``batch`` games of one kind with seeds seed .. seed + batch - 1, shape (batch, 2^n)."""
    return np.stack([make_game(kind, n, seed + b) for b in range(batch)])
