"""How much two explanations share: salient-term overlap, its chance level, and the signed IoU.

A term is (kind, player mask); an explanation's salient terms map to their signed values. See
``auditor.metrics.compare`` for how these figures are reported per prompt (science.md section 3).
"""

from __future__ import annotations

import numpy as np

from auditor.engine.interactions import DEFAULT_SALIENT_THRESHOLD, Interactions
from auditor.metrics.joint import admissible_sets

__all__ = ["Term", "salient_map", "salient_terms", "overlap", "admissible_terms", "chance_overlap", "signed_iou"]


Term = tuple[str, int]  # (kind, mask)


def salient_terms(and_terms: np.ndarray, or_terms: np.ndarray, threshold: float) -> dict[Term, float]:
    reference = max(np.abs(and_terms[1:]).max(initial=0.0), np.abs(or_terms[1:]).max(initial=0.0))
    if reference <= 0:
        return {}
    cutoff = threshold * reference
    out: dict[Term, float] = {}
    for kind, vector in (("and", and_terms), ("or", or_terms)):
        for mask in np.flatnonzero(np.abs(vector) >= cutoff):
            if mask:
                out[(kind, int(mask))] = float(vector[mask])
    return out


def salient_map(interactions: Interactions, threshold: float = DEFAULT_SALIENT_THRESHOLD) -> dict[Term, float]:
    """Salient terms of one extraction as {(kind, mask): signed value} (same rule as ``salient()``)."""
    return salient_terms(interactions.and_terms, interactions.or_terms, threshold)


def overlap(a: dict[Term, float], b: dict[Term, float]) -> float | None:
    """Share of a's terms that are in b with the same sign (None when a has no salient term)."""
    if not a:
        return None
    same = sum(1 for t, v in a.items() if t in b and np.sign(b[t]) == np.sign(v))
    return same / len(a)


def admissible_terms(n: int, mode: str = "and-or") -> int:
    """Distinct terms a split can carry: 2^n - 1 AND terms and 2^n - n - 1 OR terms (order >= 2)."""
    return (1 << n) - 1 + (0 if mode == "and" else (1 << n) - n - 1)


def chance_overlap(size: int, b: dict[Term, float], n: int, *, draws: int = 1000, seed: int = 0,
                   mode: str = "and-or") -> tuple[float | None, float | None]:
    """(expected, 95th percentile) overlap of a random signed set of ``size`` terms with ``b``.

    The random set is drawn uniformly without replacement from the admissible terms, each with a
    fair random sign; the expectation is |b| / (2 U) exactly, the percentile from ``draws`` draws.
    """
    if size <= 0:
        return None, None
    universe = admissible_terms(n, mode)
    size = min(size, universe)
    expected = len(b) / (2 * universe)
    if draws <= 0:
        return expected, None
    # index the admissible terms 0..U-1: AND masks 1..2^n-1 first, then OR masks of order >= 2
    and_sets, or_sets = admissible_sets(n, mode)
    signs_b = np.zeros(universe)
    and_pos = {int(m): k for k, m in enumerate(and_sets)}
    or_pos = {int(m): len(and_sets) + k for k, m in enumerate(or_sets)}
    for (kind, mask), value in b.items():
        k = (and_pos if kind == "and" else or_pos).get(mask)
        if k is not None:
            signs_b[k] = np.sign(value)
    rng = np.random.default_rng(seed)
    shares = np.empty(draws)
    for d in range(draws):
        picked = rng.choice(universe, size=size, replace=False)
        signs = rng.choice((-1.0, 1.0), size=size)
        shares[d] = float(np.mean(signs_b[picked] == signs))
    return expected, float(np.quantile(shares, 0.95))


def signed_iou(a: dict[Term, float], b: dict[Term, float]) -> float | None:
    """Strength-weighted signed IoU of two salient sets, each scaled to unit total strength."""
    total_a = sum(abs(v) for v in a.values())
    total_b = sum(abs(v) for v in b.values())
    if total_a <= 0 or total_b <= 0:
        return None
    inter = union = 0.0
    for t in set(a) | set(b):
        x, y = a.get(t, 0.0) / total_a, b.get(t, 0.0) / total_b
        union += max(abs(x), abs(y))
        if x * y > 0:
            inter += min(abs(x), abs(y))
    return inter / union if union > 0 else None
