"""shapiq-style benchmark games, as 2^n vectors in binary order, and the bridge to shapiq's oracle.

shapiq 1.4.1 ships no benchmark games, so the classic ones are written here: a sum of unanimity
games (SOUM) with known Möbius coefficients (low orders, and one reaching order n), a game with a
dummy player, and random games. ``exact_computer`` wraps a vector as the coalition-matrix game that
shapiq's ExactComputer expects; ``as_vector`` maps its InteractionValues (tuples) back to masks.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from shapiq import ExactComputer, InteractionValues


def mask_of(players: tuple[int, ...]) -> int:
    return sum(1 << i for i in players)


def unanimity_sum(n: int, coefficients: dict[int, float]) -> np.ndarray:
    """v(T) = sum_j c_j [U_j subset of T]: its Möbius transform is c (by definition)."""
    index = np.arange(1 << n)
    values = np.zeros(1 << n)
    for mask, coefficient in coefficients.items():
        values += coefficient * ((index & mask) == mask)
    return values


def soum(n: int, seed: int, terms: int = 12, max_order: int | None = None) -> tuple[np.ndarray, dict[int, float]]:
    """A random SOUM: ``terms`` unanimity games of random order 1..max_order (default n), N(0, 1) coefficients."""
    rng = np.random.default_rng(seed)
    top = n if max_order is None else max_order
    coefficients: dict[int, float] = {}
    for _ in range(terms):
        size = int(rng.integers(1, top + 1))
        mask = mask_of(tuple(sorted(rng.choice(n, size=size, replace=False).tolist())))
        coefficients[mask] = coefficients.get(mask, 0.0) + float(rng.normal())
    coefficients[(1 << n) - 1] = coefficients.get((1 << n) - 1, 0.0) + 0.5  # always reach order n
    return unanimity_sum(n, coefficients), coefficients


def dummy_game(n: int, seed: int, dummy: int) -> np.ndarray:
    """A random game of the other n - 1 players in which ``dummy`` changes nothing."""
    rng = np.random.default_rng(seed)
    index = np.arange(1 << n)
    low = (1 << dummy) - 1
    without = (index & low) | ((index >> (dummy + 1)) << dummy)  # drop the dummy's bit
    return rng.normal(size=1 << (n - 1))[without]


def random_game(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=1 << n) + 3.0


def games(n: int) -> dict[str, np.ndarray]:
    """The benchmark games at n players, by name."""
    return {
        "soum-low": soum(n, seed=n, max_order=3)[0],
        "soum-high": soum(n, seed=100 + n, terms=20)[0],
        "dummy": dummy_game(n, seed=n, dummy=n // 2),
        "random": random_game(n, seed=n),
    }


def shapiq_game(values: np.ndarray, n: int) -> Callable[[np.ndarray], np.ndarray]:
    weights = 1 << np.arange(n)

    def game(coalitions: np.ndarray) -> np.ndarray:
        return values[(coalitions.astype(np.int64) * weights).sum(axis=1)]

    return game


def exact_computer(values: np.ndarray) -> ExactComputer:
    n = int(np.log2(len(values)))
    return ExactComputer(shapiq_game(values, n), n_players=n)


def shapiq_index(values: np.ndarray, index: str, order: int | None) -> InteractionValues:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shapiq warns about its own index conversions
        return exact_computer(values)(index, order)


def as_vector(interaction_values: InteractionValues, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, present): shapiq's values at their masks, and which masks shapiq reported."""
    values = np.zeros(1 << n)
    present = np.zeros(1 << n, dtype=bool)
    for players, value in interaction_values.dict_values.items():
        values[mask_of(tuple(players))] = value
        present[mask_of(tuple(players))] = True
    return values, present
