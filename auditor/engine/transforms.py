"""Fast AND/OR interaction transforms in O(n 2^n), batched over leading dimensions, on any device.

Every game and every interaction vector of this project is a tensor whose last dimension has length
2^n in binary order: bit i of an index is player i, index 0 is the empty set, 2^n - 1 is N.

Why butterflies and not matrices: the subset-sum (zeta) matrix is the n-fold Kronecker power of
[[1, 0], [1, 1]], so it factors into n sparse stages, one per player. Applying the stages costs
O(n 2^n) time and needs one extra copy of the input, where the dense matrix of the reference code
costs O(4^n) (16 GiB at n = 16). All the transforms below are compositions of four butterflies:

    subset_sum      f(T) = sum_{S subset T} x(S)          (zeta; AND terms -> values)
    subset_mobius   inverse of subset_sum                 (values -> AND terms, Harsanyi dividends)
    superset_sum    f(S) = sum_{T superset S} x(T)        (adjoint of subset_sum)
    superset_mobius inverse of superset_sum               (adjoint of subset_mobius)

and the complement permutation ``flip`` (T -> N \\ T), which reverses the last dimension.

The OR transform follows science.md: I_or(S) = - sum_{L subset S} (-1)^{|S|-|L|} v(N \\ L), so
I_or = -subset_mobius(flip(v)). Entry 0 of that vector is -v(N), a constant that is not an
interaction; ``or_transform`` keeps it so that the map is invertible (``or_inverse``), and reporting
code treats entry 0 of both AND and OR vectors as the constant, never as an interaction.
"""

from __future__ import annotations

import torch

__all__ = [
    "num_players",
    "subset_sum",
    "subset_mobius",
    "superset_sum",
    "superset_mobius",
    "flip",
    "and_transform",
    "and_inverse",
    "and_transform_adjoint",
    "and_inverse_adjoint",
    "or_transform",
    "or_inverse",
    "or_transform_adjoint",
    "or_inverse_adjoint",
    "popcounts",
]


def num_players(length: int) -> int:
    """n for a vector of length 2^n; raises ValueError when the length is not a power of two."""
    if length < 1 or length & (length - 1):
        raise ValueError(f"the last dimension must have length 2^n, got {length}")
    return length.bit_length() - 1


def _butterfly(x: torch.Tensor, *, upward: bool, sign: float) -> torch.Tensor:
    """Apply the n stages of a subset (upward) or superset butterfly on a copy of ``x``.

    Stage i views the last dimension as (high bits, bit i, low bits) and adds +-(half without i)
    to the half with i (upward) or the reverse. Working on a contiguous copy keeps the caller's
    tensor intact and makes every stage a strided in-place add (no 2^n x 2^n intermediate).
    """
    n = num_players(x.shape[-1])
    out = x.clone(memory_format=torch.contiguous_format)
    lead = out.shape[:-1]
    for i in range(n):
        view = out.view(*lead, 1 << (n - 1 - i), 2, 1 << i)
        lower, upper = view[..., 0, :], view[..., 1, :]
        if upward:
            upper.add_(lower, alpha=sign)
        else:
            lower.add_(upper, alpha=sign)
    return out


def subset_sum(x: torch.Tensor) -> torch.Tensor:
    """f(T) = sum over S subset of T of x(S): the zeta transform, AND terms to values."""
    return _butterfly(x, upward=True, sign=1.0)


def subset_mobius(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`subset_sum`: f(S) = sum over L subset of S of (-1)^{|S|-|L|} x(L)."""
    return _butterfly(x, upward=True, sign=-1.0)


def superset_sum(x: torch.Tensor) -> torch.Tensor:
    """f(S) = sum over T superset of S of x(T): the adjoint (transpose) of :func:`subset_sum`."""
    return _butterfly(x, upward=False, sign=1.0)


def superset_mobius(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`superset_sum`, and the adjoint of :func:`subset_mobius`."""
    return _butterfly(x, upward=False, sign=-1.0)


def flip(x: torch.Tensor) -> torch.Tensor:
    """x(N \\ T) at index T: complementing every bit reverses the binary order."""
    return torch.flip(x, dims=(-1,))


# --- AND (Harsanyi dividends) -------------------------------------------------------------------


def and_transform(v: torch.Tensor) -> torch.Tensor:
    """I_and(S) = sum_{L subset S} (-1)^{|S|-|L|} v(L); entry 0 is v(empty)."""
    return subset_mobius(v)


def and_inverse(interactions: torch.Tensor) -> torch.Tensor:
    """v(T) = sum_{S subset T} I_and(S) (universal matching of the AND part)."""
    return subset_sum(interactions)


def and_transform_adjoint(y: torch.Tensor) -> torch.Tensor:
    """Transpose of :func:`and_transform`."""
    return superset_mobius(y)


def and_inverse_adjoint(y: torch.Tensor) -> torch.Tensor:
    """Transpose of :func:`and_inverse`: (Z^T y)(S) = sum over T superset S of y(T)."""
    return superset_sum(y)


# --- OR -----------------------------------------------------------------------------------------


def or_transform(v: torch.Tensor) -> torch.Tensor:
    """I_or(S) = -sum_{L subset S} (-1)^{|S|-|L|} v(N \\ L); entry 0 holds the constant -v(N)."""
    return -subset_mobius(flip(v))


def or_inverse(interactions: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`or_transform`.

    For S non-empty this is v(T) = v(empty) + sum over S meeting T of I_or(S), where
    v(empty) = -(entry 0) - sum over non-empty S of I_or(S).
    """
    return flip(subset_sum(-interactions))


def or_transform_adjoint(y: torch.Tensor) -> torch.Tensor:
    """Transpose of :func:`or_transform` (= -flip o superset_mobius)."""
    return -flip(superset_mobius(y))


def or_inverse_adjoint(y: torch.Tensor) -> torch.Tensor:
    """Transpose of :func:`or_inverse` (= -superset_sum o flip)."""
    return -superset_sum(flip(y))


def popcounts(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """|S| for every index S of a length-2^n vector (the order of each interaction)."""
    index = torch.arange(1 << n, device=device)
    counts = torch.zeros_like(index)
    for i in range(n):
        counts += (index >> i) & 1
    return counts
