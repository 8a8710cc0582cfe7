"""Audit metrics of one extraction (science.md section 3), and their aggregation over a window.

Everything here is a pure function of an ``Interactions`` result and the players' labels, so the
numbers in a record, a dashboard and a compliance report can always be recomputed from the stored
interactions.

The overfitting score. Generalizable interactions have a decay-shaped order profile (strength falls
with order); non-generalizable ones spread like noise over all subsets, so their strength per order
follows the binomial count C(n, m): a spindle peaking at mid order (Zhang et al. 2024; Cheng et al.
2025). We fit the normalised strength-per-order profile of a request as a non-negative mixture
w_d * decay + w_s * spindle (NNLS, both templates normalised to unit mass) and report the spindle
share w_s / (w_d + w_s). Two choices are explicit and recorded: the decay template (geometric,
ratio 1/2: each extra player halves the expected strength) and which terms feed the profile. We use
*all* non-zero terms of the certified optimum rather than only the salient ones: the non-generalizable
part consists of many weak terms by nature, and the 5% salience cut would remove exactly the
evidence the score needs.

Over a window, profiles are pooled in the game's own unit (nats of log-odds) and fitted once: the
window score is the spindle share of the window's total strength, a ratio of sums. Why not scale
each request to unit mass first (as before): noise-like interactions cancel. Their Harsanyi
dividends are zero-mean, so they add strength without adding output (by universal matching all
terms sum to v(N) - v(empty)); a memorising request carries many times the strength of a clean one,
and unit-mass scaling gave it a clean request's weight (a window of half clean, half noise-dominated
requests then scored below a window of uniformly mild ones; see the oracle test in
tests/metrics/test_audit_metrics.py). Why not pool in units of each request's |v(N) - v(empty)| (science.md's
unit for the order profile): that divides by a per-request quantity that is near zero exactly on
noise-dominated requests, so one request can carry a hundred times the weight of the others
(measured on the testbed: per-request strength / |v(N) - v(empty)| up to 143 against a median of 8),
a ratio estimator without a finite variance. Per request the share is scale-free, so a single
request's score does not depend on any of this.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from math import comb

import numpy as np
from pydantic import BaseModel, Field
from scipy.optimize import nnls

from auditor.engine.interactions import DEFAULT_SALIENT_THRESHOLD, Interactions, SalientTerm

UNRELIABLE_LABELS = frozenset({"irrelevant", "forbidden"})
REGIONAL_BALANCE = 0.1  # a region "cancels" when min(P_i, Q_i) / max(P_i, Q_i) >= this
DECAY_RATIO = 0.5


class OrderProfile(BaseModel):
    """Salient strength per order (index m - 1), by sign, normalised by |v(N) - v(empty)|."""

    positive: list[float]
    negative: list[float]


class OverfittingFit(BaseModel):
    """The decay/spindle mixture behind an overfitting score, kept for audits and reports."""

    score: float = Field(description="spindle share w_s / (w_d + w_s), in [0, 1]")
    decay_weight: float
    spindle_weight: float
    residual: float = Field(description="L2 misfit of the mixture to the normalised profile")
    profile: list[float] = Field(description="normalised strength per order over all non-zero terms")
    strength: float | None = Field(
        default=None,
        description="sum of |I(S)| over all non-zero terms, in the output's unit (nats of log-odds): the "
        "weight of this request's profile when a window is pooled (None: unknown, weight 1)",
    )


class Faithfulness(BaseModel):
    max_q_ratio: float = Field(description="max |q_T| / |v(N) - v(empty)|; at most qthres by construction")
    salient_reconstruction_error: float = Field(
        description="RMS over all 2^n states of v - (salient terms only), divided by |v(N) - v(empty)|"
    )
    certified_gap: float


class AuditMetrics(BaseModel):
    n: int
    normaliser: float
    salient_threshold: float
    sparsity: int = Field(description="number of salient interactions")
    order_profile: OrderProfile
    cancellation: float = Field(description="2 min(P, Q) / (P + Q) over salient strength")
    regional_cancellation: float = Field(description="share of players whose region has min/max >= 0.1")
    overfitting: float
    overfitting_fit: OverfittingFit
    misattribution: float | None = Field(description="unreliable salient strength / all salient strength")
    faithfulness: Faithfulness


# --- templates and the overfitting fit ----------------------------------------------------------


def decay_template(n: int, ratio: float = DECAY_RATIO) -> np.ndarray:
    weights = ratio ** np.arange(n)
    return weights / weights.sum()


def spindle_template(n: int) -> np.ndarray:
    weights = np.array([comb(n, m) for m in range(1, n + 1)], dtype=np.float64)
    return weights / weights.sum()


def strength_by_order(interactions: Interactions) -> np.ndarray:
    """Total |I(S)| per order m = 1..n over every non-zero AND and OR term."""
    orders = np.array([int(mask).bit_count() for mask in range(1 << interactions.n)])
    strength = np.abs(interactions.and_terms) + np.abs(interactions.or_terms)
    profile = np.bincount(orders, weights=strength, minlength=interactions.n + 1)[1:]
    return profile


def fit_overfitting(profile: np.ndarray) -> OverfittingFit:
    """Spindle share of a strength-per-order profile (any positive scale)."""
    n = len(profile)
    total = float(profile.sum())
    if total <= 0.0 or n == 0:
        return OverfittingFit(score=0.0, decay_weight=0.0, spindle_weight=0.0, residual=0.0, profile=[0.0] * n)
    normalised = profile / total
    basis = np.stack([decay_template(n), spindle_template(n)], axis=1)
    weights, residual = nnls(basis, normalised)
    share = float(weights[1] / weights.sum()) if weights.sum() > 0 else 0.0
    return OverfittingFit(
        score=share,
        decay_weight=float(weights[0]),
        spindle_weight=float(weights[1]),
        residual=float(residual),
        profile=normalised.tolist(),
    )


def amplification(interactions: Interactions) -> float | None:
    """Total interaction strength in units of the output, sum |I(S)| / |v(N) - v(empty)|.

    1 when every term pushes the same way; large when strength cancels, as noise-like terms do.
    A diagnostic (not a pooling weight, see the module docstring). None when v(N) = v(empty).
    """
    normaliser = interactions.normaliser
    if normaliser <= 0:
        return None
    return float(strength_by_order(interactions).sum()) / normaliser


def fit_window(profiles: Sequence[np.ndarray], weights: Sequence[float | None] | None = None) -> OverfittingFit:
    """One mixture for a window of profiles, each scaled to unit mass times its weight (its strength).

    Requests may have different numbers of players, so profiles cannot be added entry by entry;
    each contributes its own rows (its weighted profile against its own n's templates) to a single
    stacked NNLS with shared weights. For equal n this is exactly the fit of the weighted mean
    profile (the stacked normal equations coincide). A weight of None counts as 1 (records written
    before strengths were stored). The reported profile is the weighted mean, renormalised,
    over the requests with the window's most common n.
    """
    rows, targets, by_n = [], [], {}
    weights = [None] * len(profiles) if weights is None else list(weights)
    if len(weights) != len(profiles):
        raise ValueError(f"got {len(weights)} weights for {len(profiles)} profiles")
    for profile, weight in zip(profiles, weights):
        profile = np.asarray(profile, dtype=np.float64)
        total = profile.sum()
        if total <= 0:
            continue
        scaled = profile / total * (1.0 if weight is None or not np.isfinite(weight) else float(weight))
        n = len(profile)
        rows.append(np.stack([decay_template(n), spindle_template(n)], axis=1))
        targets.append(scaled)
        by_n.setdefault(n, []).append(scaled)
    if not rows:
        return fit_overfitting(np.zeros(0))
    weights_fit, residual = nnls(np.concatenate(rows), np.concatenate(targets))
    common = np.sum(np.stack(max(by_n.values(), key=len)), axis=0)
    share = float(weights_fit[1] / weights_fit.sum()) if weights_fit.sum() > 0 else 0.0
    return OverfittingFit(
        score=share,
        decay_weight=float(weights_fit[0]),
        spindle_weight=float(weights_fit[1]),
        residual=float(residual / np.sqrt(len(rows))),
        profile=(common / common.sum()).tolist(),
    )


def overfitting_over_window(results: Iterable[Interactions]) -> OverfittingFit:
    """One score for a window of audits: their strength profiles added up (nats) and fitted once.

    See the module docstring for why the window is pooled in the game's unit and ``fit_window``
    for how requests with different numbers of players are combined.
    """
    return overfitting_from_profiles([strength_by_order(result) for result in results])


def overfitting_from_profiles(profiles: Sequence[np.ndarray]) -> OverfittingFit:
    """The window score from stored strength-per-order profiles (nats), each weighted by its own total.

    The same figure as ``overfitting_over_window`` on the audits the profiles came from; records
    and validation reports keep profiles, so windows (and bootstrap resamples of them) can be
    rescored without the interactions.
    """
    arrays = [np.asarray(profile, dtype=np.float64) for profile in profiles]
    return fit_window(arrays, [float(profile.sum()) for profile in arrays])


# --- the per-request metrics --------------------------------------------------------------------


def _order_profile(salient: Sequence[SalientTerm], n: int, normaliser: float) -> OrderProfile:
    positive, negative = np.zeros(n), np.zeros(n)
    for term in salient:
        (positive if term.value > 0 else negative)[term.order - 1] += term.strength
    scale = normaliser if normaliser > 0 else 1.0
    return OrderProfile(positive=(positive / scale).tolist(), negative=(negative / scale).tolist())


def _cancellation(salient: Sequence[SalientTerm]) -> float:
    positive = sum(term.strength for term in salient if term.value > 0)
    negative = sum(term.strength for term in salient if term.value < 0)
    total = positive + negative
    return 2.0 * min(positive, negative) / total if total > 0 else 0.0


def _regional_cancellation(salient: Sequence[SalientTerm], n: int) -> float:
    """Share of players i whose region (salient terms containing i) mixes both signs substantially."""
    balanced = 0
    regions = 0
    for player in range(n):
        region = [term for term in salient if player in term.players]
        positive = sum(term.strength for term in region if term.value > 0)
        negative = sum(term.strength for term in region if term.value < 0)
        if positive + negative == 0:
            continue
        regions += 1
        if min(positive, negative) / max(positive, negative) >= REGIONAL_BALANCE:
            balanced += 1
    return balanced / regions if regions else 0.0


def misattribution_score(salient: Sequence[SalientTerm], labels: Sequence[str] | None) -> float | None:
    """Salient strength resting on an irrelevant or forbidden player, as a share of all salient strength.

    None when no player carries a label that could make a term unreliable: then the score would be 0
    by construction and would dilute the population's distribution.
    """
    if labels is None or not any(label in UNRELIABLE_LABELS for label in labels):
        return None
    total = sum(term.strength for term in salient)
    if total == 0:
        return 0.0
    unreliable = sum(term.strength for term in salient if any(labels[i] in UNRELIABLE_LABELS for i in term.players))
    return unreliable / total


def _faithfulness(interactions: Interactions, salient: Sequence[SalientTerm]) -> Faithfulness:
    normaliser = interactions.normaliser or 1.0
    kept_and = np.zeros_like(interactions.and_terms)
    kept_or = np.zeros_like(interactions.or_terms)
    for term in salient:
        (kept_and if term.kind == "and" else kept_or)[term.mask] = term.value
    sparse = Interactions(**{**interactions.__dict__, "and_terms": kept_and, "or_terms": kept_or})
    error = sparse.reconstruct() - interactions.values
    return Faithfulness(
        max_q_ratio=float(np.abs(interactions.q).max() / normaliser),
        salient_reconstruction_error=float(np.sqrt(np.mean(error**2)) / normaliser),
        certified_gap=interactions.gap,
    )


def compute_metrics(
    interactions: Interactions,
    labels: Sequence[str] | None = None,
    *,
    salient_threshold: float = DEFAULT_SALIENT_THRESHOLD,
) -> AuditMetrics:
    """All per-request metrics; ``labels[i]`` is player i's label (relevant, irrelevant, forbidden, unlabelled)."""
    if labels is not None and len(labels) != interactions.n:
        raise ValueError(f"got {len(labels)} labels for {interactions.n} players")
    salient = interactions.salient(salient_threshold)
    profile = strength_by_order(interactions)
    fit = fit_overfitting(profile)
    fit.strength = float(profile.sum())
    return AuditMetrics(
        n=interactions.n,
        normaliser=interactions.normaliser,
        salient_threshold=salient_threshold,
        sparsity=len(salient),
        order_profile=_order_profile(salient, interactions.n, interactions.normaliser),
        cancellation=_cancellation(salient),
        regional_cancellation=_regional_cancellation(salient, interactions.n),
        overfitting=fit.score,
        overfitting_fit=fit,
        misattribution=misattribution_score(salient, labels),
        faithfulness=_faithfulness(interactions, salient),
    )
