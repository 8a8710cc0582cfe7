"""How far the testbed's acceptance figures can be trusted: their targets, and how often they hold
when the audited prompts are resampled.

Why a module of its own: 40 prompts is a small sample, and a figure that meets its target by one
adjacent swap may hold in half the bootstrap resamples or in all of them. The judgment world reports
these shares beside its verdict; the dossier world's acceptance (issue 19) requires each figure to
hold in at least :data:`STABILITY_TARGET` of them, so the shares are part of its verdict.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import ConstantInputWarning, mannwhitneyu, spearmanr

from auditor.metrics import fragility as fragility_lib
from auditor.metrics.audit_metrics import overfitting_from_profiles

MISATTRIBUTION_AUC_TARGET = 0.95
OVERFITTING_SPEARMAN_TARGET = 0.9
# Rank statistics take a few exact values (five levels with one adjacent swap: exactly 0.9), which
# scipy reaches through floating point; a target met exactly must not fail on the last bit.
_ROUNDING = 1e-9
# How often a verdict survives resampling the audited prompts (bootstrap, fixed seed so reports
# reproduce): 20 prompts is a small sample, and a figure that meets its target by one adjacent swap
# may hold in half the resamples or in all of them (part of the verdict only where a world asks for
# it: STABILITY_TARGET).
DEFAULT_RESAMPLES = 500
RESAMPLING_SEED = 0
STABILITY_TARGET = 0.9
"""Share of bootstrap resamples in which a figure must meet its target where a world's acceptance asks
for stability (the dossier world: issue 19, "each holding in >= 90% of bootstrap resamples")."""


def per_prompt_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney U / n1 n2)."""
    if not positives or not negatives:
        return float("nan")
    statistic = mannwhitneyu(positives, negatives, alternative="greater").statistic
    return float(statistic / (len(positives) * len(negatives)))


def misattribution_stability(
    positives: Sequence[float], negatives: Sequence[float], resamples: int = DEFAULT_RESAMPLES,
    seed: int = RESAMPLING_SEED,
) -> float | None:
    """Share of bootstrap resamples whose AUC still meets the target.

    The two models answer their own prompts (a prompt without unreliable players drops out of one
    side only), so each side is resampled on its own: a two-sample bootstrap.
    """
    if not positives or not negatives or resamples <= 0:
        return None
    rng = np.random.default_rng(seed)
    pos, neg = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    met = 0
    for _ in range(resamples):
        auc = per_prompt_auc(rng.choice(pos, len(pos)).tolist(), rng.choice(neg, len(neg)).tolist())
        met += auc >= MISATTRIBUTION_AUC_TARGET - _ROUNDING
    return met / resamples


def overfitting_stability(
    family: Sequence[Any], resamples: int = DEFAULT_RESAMPLES, seed: int = RESAMPLING_SEED,
    size: int | None = None,
) -> float | None:
    """Share of bootstrap resamples of the prompts whose window scores still meet the Spearman target.

    Every level is audited on the same prompts, so one draw of prompt indices is shared by all of
    them (a paired bootstrap: a hard prompt stays hard for every level). The gaps are measured on
    held-out data and stay fixed. A resample whose scores are all tied has no rank correlation and
    counts as a miss. With ``size``, each draw is instead a random subset of that many prompts
    (without replacement): the share estimates how often a validation on ``size`` prompts meets it.
    """
    return _family_stability(family, "strength_by_order", lambda profiles: overfitting_from_profiles(profiles).score,
                             resamples, seed, size)


def fragility_stability(
    family: Sequence[Any], resamples: int = DEFAULT_RESAMPLES, seed: int = RESAMPLING_SEED
) -> float | None:
    """``overfitting_stability`` for the window fragility (median over the resampled prompts)."""
    return _family_stability(family, "fragility", _window_fragility_or_nan, resamples, seed)


def loss_stability(
    family: Sequence[Any], resamples: int = DEFAULT_RESAMPLES, seed: int = RESAMPLING_SEED,
    size: int | None = None,
) -> float | None:
    """``overfitting_stability`` for the reference: the mean gold-answer loss of the resampled prompts."""
    return _family_stability(family, "answer_loss", _mean, resamples, seed, size)


def per_request_stability(
    family: Sequence[Any], resamples: int = DEFAULT_RESAMPLES, seed: int = RESAMPLING_SEED
) -> float | None:
    """``overfitting_stability`` for the trial figure: the mean of each prompt's own spindle share
    (every prompt weighs alike, where the window weighs each by its strength in nats)."""
    return _family_stability(family, "overfitting", _mean, resamples, seed)


def _mean(values: list) -> float:
    return float(np.mean(values))


def _family_stability(
    family: Sequence[Any], per_prompt: str, window: Callable[[list], float], resamples: int, seed: int,
    size: int | None = None,
) -> float | None:
    """``_ranking_stability`` of the family's per-prompt ``per_prompt`` lists against its gaps."""
    return _ranking_stability([getattr(model, per_prompt) for model in family], window,
                              [model.generalization_gap for model in family], resamples, seed, size)


def _window_fragility_or_nan(values: list) -> float:
    """A window without a defined fragility has no rank: NaN makes the resample count as a miss."""
    window = fragility_lib.window_fragility(values)
    return float("nan") if window is None else window


def _ranking_stability(
    per_model: Sequence[Sequence[object]],
    window: Callable[[list], float],
    gaps: Sequence[float],
    resamples: int,
    seed: int,
    size: int | None = None,
) -> float | None:
    """Share of draws of prompt indices (shared by every model) whose window ranking meets the target.

    A draw is a bootstrap resample (``size`` None) or a random subset of ``size`` prompts.
    """
    counts = {len(samples) for samples in per_model}
    if len(per_model) < 2 or resamples <= 0 or len(counts) != 1 or 0 in counts:
        return None
    (count,) = counts
    if size is not None and not 1 <= size <= count:
        raise ValueError(f"a subset of {size} prompts cannot be drawn from {count}")
    rng = np.random.default_rng(seed)
    met = 0
    for _ in range(resamples):
        draw = rng.integers(0, count, count) if size is None else rng.choice(count, size, replace=False)
        scores = [window([samples[i] for i in draw]) for samples in per_model]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConstantInputWarning)
            rho = spearmanr(scores, gaps).statistic
        met += bool(np.isfinite(rho) and rho >= OVERFITTING_SPEARMAN_TARGET - _ROUNDING)
    return met / resamples
