"""Exact values of a game given by its 2^n outputs: transforms, Shapley and Banzhaf values, indices.

Where exact is cheap, nothing should be approximated or fitted: with all 2^n outputs in hand, the
Möbius transform and every classical value and interaction index below are a few fast butterflies
(``auditor.engine.transforms``) away, milliseconds at n = 14, instead of shapiq's O(3^n) loops.

Conventions (those of the whole engine, science.md section 1):

- a game is a vector whose last dimension has length 2^n in binary order: bit i of an index is
  player i, index 0 is the empty set; leading dimensions are a batch;
- interaction vectors use the same indexing; an index computed up to order k is 0 on every set of
  more than k players; in :func:`interaction_index` the empty-set entry follows shapiq's
  ExactComputer (v(empty) for Möbius, Co-Möbius, STII, FSII and SV; the index's own value at the
  empty set for SII, BII and BV, the mean of v for the last two), so that
  ``Interactions.to_shapiq`` and shapiq agree entry by entry;
- numpy arrays (or lists) in give numpy arrays out, torch tensors give tensors on the same device.
  Everything is computed in float64 whatever the input dtype: the transforms add 2^k values into an
  order-k term, so float32 would lose the small terms. ``dtype`` casts the result only.

All indices are built from the Möbius (Harsanyi) terms m = moebius_transform(v) as
f(S) = sum over T superset of S of w(|S|, |T|) m(T) (Grabisch 1997; Tsai et al. 2023 for FSII), with

    SII   w = 1 / (|T| - |S| + 1)                       Banzhaf interaction (BII)  w = 2^-(|T| - |S|)
    STII  order k: m(S) below k, w = 1 / C(|T|, k) at |S| = k
    FSII  order k: m(S) + (-1)^(k-|S|) |S|/(k+|S|) C(k, |S|) sum over T, |T| > k, of
          C(|T|-1, k) / C(|T|+k-1, k+|S|) m(T)

A weight that factorises over players (BII, STII's top order) is one superset butterfly, O(n 2^n);
a weight that depends on both |S| and |T| (SII, FSII) needs one superset sum per size |T|, O(n^2 2^n),
below the O(3^n) of summing over supersets directly from n = 13 on. Shapley and Banzhaf values
are weighted marginal contributions v(T + i) - v(T), O(n 2^n): equal to sum over S containing i of
m(S)/|S| (and m(S)/2^(|S|-1)), but without the 2^n-fold amplification of rounding error that the
detour through m brings, so efficiency holds to rounding at any n.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from auditor.engine.transforms import (
    num_players,
    or_inverse,
    or_transform,
    popcounts,
    subset_mobius,
    subset_sum,
    superset_sum,
)

__all__ = [
    "INDICES",
    "moebius_transform",
    "inverse_moebius_transform",
    "comoebius_transform",
    "inverse_comoebius_transform",
    "shapley_values",
    "banzhaf_values",
    "shapley_interaction_index",
    "shapley_taylor_index",
    "faithful_shapley_index",
    "banzhaf_interaction_index",
    "interaction_index",
    "canonical_index",
]

GameLike = torch.Tensor | np.ndarray | Sequence[float]
DTypeLike = torch.dtype | np.dtype | type | str | None
Convention = Literal["or", "shapiq"]

# shapiq's names of the indices this module computes exactly, with the order each defaults to
# (None: n, as shapiq's ExactComputer does)
INDICES: dict[str, int | None] = {
    "Moebius": None, "Co-Moebius": None, "SV": 1, "BV": 1, "SII": None, "BII": None, "STII": None, "FSII": None,
}


# --- input and output ---------------------------------------------------------------------------


def _prepare(game: GameLike) -> tuple[torch.Tensor, bool]:
    """The game as a float64 tensor (on the caller's device) and whether the caller gave a tensor."""
    if isinstance(game, torch.Tensor):
        tensor = game.to(torch.float64)
        is_tensor = True
    else:
        tensor = torch.from_numpy(np.array(game, dtype=np.float64, copy=True))
        is_tensor = False
    if tensor.ndim == 0:
        raise ValueError("a game must be a vector of length 2^n (or a batch of them), got a scalar")
    num_players(tensor.shape[-1])  # raises a ValueError naming the length
    return tensor, is_tensor


def _finish(result: torch.Tensor, is_tensor: bool, dtype: DTypeLike) -> torch.Tensor | np.ndarray:
    """Back to the caller's kind of array; float64 unless ``dtype`` asks for another."""
    if is_tensor:
        if dtype is None:
            return result
        target = dtype if isinstance(dtype, torch.dtype) else torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        return result.to(target)
    array = result.cpu().numpy()
    if dtype is None:
        return array
    target = torch.empty(0, dtype=dtype).numpy().dtype if isinstance(dtype, torch.dtype) else np.dtype(dtype)
    return array.astype(target)


def _exact(compute: Callable[[torch.Tensor], torch.Tensor], game: GameLike, dtype: DTypeLike):
    tensor, is_tensor = _prepare(game)
    return _finish(compute(tensor), is_tensor, dtype)


def _check_order(order: int | None, n: int, default: int) -> int:
    if order is None:
        return default
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or not 1 <= order <= max(n, 1):
        raise ValueError(f"order must be an integer between 1 and n = {n}, got {order!r}")
    return int(order)


def _truncate(vector: torch.Tensor, order: int) -> torch.Tensor:
    """Zero every entry of a set larger than ``order`` (the index is not defined there)."""
    n = num_players(vector.shape[-1])
    if order >= n:
        return vector
    return torch.where(popcounts(n, vector.device) <= order, vector, 0.0)


# --- transforms ---------------------------------------------------------------------------------


def moebius_transform(game: GameLike, *, order: int | None = None, dtype: DTypeLike = None):
    """Möbius (Harsanyi, AND) terms m(S) = sum_{L subset S} (-1)^{|S|-|L|} v(L); m(empty) = v(empty).

    Identical to shapiq's "Moebius" and to the engine's AND terms at qthres = 0. ``order`` keeps only
    the terms of at most that many players.
    """
    def compute(v: torch.Tensor) -> torch.Tensor:
        n = num_players(v.shape[-1])
        return _truncate(subset_mobius(v), _check_order(order, n, n))

    return _exact(compute, game, dtype)


def inverse_moebius_transform(terms: GameLike, *, dtype: DTypeLike = None):
    """v(T) = sum_{S subset T} m(S): the game that a vector of Möbius terms describes."""
    return _exact(subset_sum, terms, dtype)


def _comoebius_signs(n: int, device: torch.device) -> torch.Tensor:
    """(-1)^(|S|+1) per set: the factor between the OR terms and shapiq's Co-Moebius values."""
    return 1.0 - 2.0 * ((popcounts(n, device) + 1) % 2).to(torch.float64)


def comoebius_transform(game: GameLike, *, convention: Convention = "or", dtype: DTypeLike = None):
    """Co-Möbius (OR) terms of a game.

    ``convention="or"`` (default) gives this project's OR terms (science.md section 2):
    I_or(S) = -sum_{L subset S} (-1)^{|S|-|L|} v(N \\ L), with entry 0 = -v(N); then
    v(T) = v(empty) + sum over non-empty S meeting T of I_or(S), so positive terms are "any of S".
    ``convention="shapiq"`` gives shapiq's Co-Moebius, co(S) = sum_{K subset S} (-1)^{|K|} v(N \\ K),
    entry 0 = v(N). The two differ by a sign per order: co(S) = (-1)^(|S|+1) I_or(S).
    """
    if convention not in ("or", "shapiq"):
        raise ValueError(f"convention must be 'or' or 'shapiq', got {convention!r}")

    def compute(v: torch.Tensor) -> torch.Tensor:
        terms = or_transform(v)
        return terms if convention == "or" else terms * _comoebius_signs(num_players(v.shape[-1]), v.device)

    return _exact(compute, game, dtype)


def inverse_comoebius_transform(terms: GameLike, *, convention: Convention = "or", dtype: DTypeLike = None):
    """The game whose co-Möbius terms (in ``convention``, see :func:`comoebius_transform`) are ``terms``."""
    if convention not in ("or", "shapiq"):
        raise ValueError(f"convention must be 'or' or 'shapiq', got {convention!r}")

    def compute(t: torch.Tensor) -> torch.Tensor:
        if convention == "shapiq":
            t = t * _comoebius_signs(num_players(t.shape[-1]), t.device)
        return or_inverse(t)

    return _exact(compute, terms, dtype)


# --- values ---------------------------------------------------------------------------------------


def _marginal_values(v: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """phi_i = sum over T not containing i of weights[|T|] (v(T + i) - v(T)), for every player i.

    Stage i views the last dimension as (high bits, bit i, low bits), as the butterflies do, so the
    marginal contributions of player i are one strided subtraction.
    """
    size = v.shape[-1]
    n = num_players(size)
    lead = v.shape[:-1]
    counts = popcounts(n, v.device)
    contiguous = v.contiguous()
    values = []
    for i in range(n):
        view = contiguous.view(*lead, size >> (i + 1), 2, 1 << i)
        without = counts.view(size >> (i + 1), 2, 1 << i)[:, 0, :]
        marginal = view[..., 1, :] - view[..., 0, :]
        values.append((marginal * weights[without]).sum(dim=(-2, -1)))
    if not values:
        return v.new_zeros((*lead, 0))
    return torch.stack(values, dim=-1)


def shapley_values(game: GameLike, *, dtype: DTypeLike = None):
    """Shapley values phi_i, shape (..., n): they sum to v(N) - v(empty) (efficiency), to rounding.

    phi_i = sum over T not containing i of |T|! (n-|T|-1)! / n! (v(T + i) - v(T))
          = sum over S containing i of m(S) / |S|   (m the Möbius terms).
    """
    return _exact(lambda v: _marginal_values(v, _value_weights("SV", v)), game, dtype)


def banzhaf_values(game: GameLike, *, dtype: DTypeLike = None):
    """Banzhaf values beta_i = 2^-(n-1) sum over T not containing i of (v(T + i) - v(T)), shape (..., n)."""
    return _exact(lambda v: _marginal_values(v, _value_weights("BV", v)), game, dtype)


# --- interaction indices from the Möbius terms -----------------------------------------------------


def _by_size_superset_sums(m: torch.Tensor, weight: Callable[[int, int], float], sizes: range) -> torch.Tensor:
    """f(S) = sum over T superset of S, |T| in ``sizes``, of weight(|S|, |T|) m(T): one butterfly per |T|."""
    n = num_players(m.shape[-1])
    counts = popcounts(n, m.device)
    out = torch.zeros_like(m)
    for t in sizes:
        table = torch.tensor([weight(s, t) if s <= t else 0.0 for s in range(n + 1)], dtype=torch.float64,
                             device=m.device)
        out += superset_sum(torch.where(counts == t, m, 0.0)) * table[counts]
    return out


def _sii(m: torch.Tensor, order: int) -> torch.Tensor:
    n = num_players(m.shape[-1])
    return _truncate(_by_size_superset_sums(m, lambda s, t: 1.0 / (t - s + 1), range(n + 1)), order)


def _bii(m: torch.Tensor, order: int) -> torch.Tensor:
    # w = 2^-(|T|-|S|) = prod over the players of T \ S of 1/2: one superset butterfly with factor 1/2
    n = num_players(m.shape[-1])
    out = m.clone(memory_format=torch.contiguous_format)
    lead = out.shape[:-1]
    for i in range(n):
        view = out.view(*lead, 1 << (n - 1 - i), 2, 1 << i)
        view[..., 0, :].add_(view[..., 1, :], alpha=0.5)
    return _truncate(out, order)


def _stii(m: torch.Tensor, order: int) -> torch.Tensor:
    n = num_players(m.shape[-1])
    counts = popcounts(n, m.device)
    scale = torch.tensor([1.0 / math.comb(t, order) if t >= order else 0.0 for t in range(n + 1)],
                         dtype=torch.float64, device=m.device)
    top = superset_sum(m * scale[counts])
    return torch.where(counts < order, m, torch.where(counts == order, top, 0.0))


def _fsii(m: torch.Tensor, order: int) -> torch.Tensor:
    n = num_players(m.shape[-1])
    k = order

    def weight(s: int, t: int) -> float:
        if s == 0 or s > k:
            return 0.0
        return ((-1) ** (k - s) * s / (k + s) * math.comb(k, s) * math.comb(t - 1, k)
                / math.comb(t + k - 1, k + s))

    return _truncate(m + _by_size_superset_sums(m, weight, range(k + 1, n + 1)), k)


_FROM_MOEBIUS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "SII": _sii, "BII": _bii, "STII": _stii, "FSII": _fsii, "Moebius": _truncate,
}


def _from_moebius(name: str, game: GameLike, order: int | None, dtype: DTypeLike):
    def compute(v: torch.Tensor) -> torch.Tensor:
        n = num_players(v.shape[-1])
        return _FROM_MOEBIUS[name](subset_mobius(v), _check_order(order, n, n))

    return _exact(compute, game, dtype)


def shapley_interaction_index(game: GameLike, *, order: int | None = None, dtype: DTypeLike = None):
    """Shapley interaction index (Grabisch 1997) of every set of at most ``order`` players (default n).

    SII(S) = sum over T superset of S of m(T) / (|T| - |S| + 1); not efficient beyond order 1 (its
    order-1 entries are the Shapley values). O(n^2 2^n).
    """
    return _from_moebius("SII", game, order, dtype)


def shapley_taylor_index(game: GameLike, *, order: int | None = None, dtype: DTypeLike = None):
    """Shapley-Taylor interaction index of order k (Sundararajan et al. 2020), efficient.

    m(S) for |S| < k and sum over T superset of S of m(T) / C(|T|, k) for |S| = k. O(n 2^n).
    """
    return _from_moebius("STII", game, order, dtype)


def faithful_shapley_index(game: GameLike, *, order: int | None = None, dtype: DTypeLike = None):
    """Faithful Shapley interaction index of order k (Tsai et al. 2023), efficient.

    In closed form from the Möbius terms (the formula in the module docstring), not by the weighted
    least squares with a large penalty that shapiq solves, so it is exact to rounding. O(n^2 2^n).
    """
    return _from_moebius("FSII", game, order, dtype)


def banzhaf_interaction_index(game: GameLike, *, order: int | None = None, dtype: DTypeLike = None):
    """Banzhaf interaction index (Grabisch & Roubens 1999) of every set of at most ``order`` players.

    BII(S) = sum over T superset of S of m(T) / 2^(|T| - |S|); order-1 entries are the Banzhaf
    values. O(n 2^n).
    """
    return _from_moebius("BII", game, order, dtype)


def canonical_index(index: str) -> str:
    """shapiq's spelling of an index name given in any case ("sii" -> "SII", "moebius" -> "Moebius")."""
    for name in INDICES:
        if name.lower() == str(index).lower():
            return name
    raise ValueError(f"index must be one of {', '.join(INDICES)}, got {index!r}")


def interaction_index(game: GameLike, index: str, *, order: int | None = None, dtype: DTypeLike = None):
    """Any index of :data:`INDICES` by shapiq's name, as a length-2^n vector in binary order.

    Entries of sets larger than ``order`` are 0 and every entry equals what shapiq's ExactComputer
    reports for that set, the empty set included: "SV" fills the singletons and v(empty), "BV" the
    singletons and the mean of v (shapiq's BV(empty), its BII(empty)), "Co-Moebius" is in shapiq's
    sign convention with v(empty) at entry 0 (where :func:`comoebius_transform` keeps v(N), which
    inverting needs). ``order`` defaults as in shapiq (n, or 1 for SV and BV). One exception: shapiq
    relabels SII of order 1 as SV and puts v(empty) at its empty set; here it stays SII, whose
    empty-set entry is sum over T of m(T) / (|T| + 1).
    """
    name = canonical_index(index)

    def compute(v: torch.Tensor) -> torch.Tensor:
        n = num_players(v.shape[-1])
        k = _check_order(order, n, INDICES[name] or n)
        if name in ("SV", "BV"):
            if k != 1:
                raise ValueError(f"{name} is a value (order 1), got order {k}")
            out = torch.zeros_like(v)
            out[..., [1 << i for i in range(n)]] = _marginal_values(v, _value_weights(name, v))
            out[..., 0] = v[..., 0] if name == "SV" else v.mean(dim=-1)
            return out
        if name == "Co-Moebius":
            out = _truncate(or_transform(v) * _comoebius_signs(n, v.device), k)
            out[..., 0] = v[..., 0]
            return out
        return _FROM_MOEBIUS[name](subset_mobius(v), k)

    return _exact(compute, game, dtype)


def _value_weights(name: str, v: torch.Tensor) -> torch.Tensor:
    """Weight of a marginal contribution v(T + i) - v(T) by |T|: Shapley's or Banzhaf's."""
    n = num_players(v.shape[-1])
    if name == "SV":
        weights = [1.0 / (n * math.comb(n - 1, t)) for t in range(n)]
    else:
        weights = [0.5 ** (n - 1)] * n
    return torch.tensor(weights or [0.0], dtype=torch.float64, device=v.device)
