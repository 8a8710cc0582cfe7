"""Metrics on constructed interactions whose right answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auditor.engine.interactions import Interactions
from auditor.metrics.audit_metrics import (
    amplification,
    compute_metrics,
    decay_template,
    fit_overfitting,
    fit_window,
    overfitting_over_window,
    spindle_template,
    strength_by_order,
)
from auditor.engine.extraction import extract_interactions
from auditor.engine.transforms import and_transform


def build(n: int, and_terms: dict[int, float], or_terms: dict[int, float] | None = None) -> Interactions:
    """An Interactions whose game is exactly the given terms (q = 0)."""
    a, b = np.zeros(1 << n), np.zeros(1 << n)
    for mask, value in and_terms.items():
        a[mask] = value
    for mask, value in (or_terms or {}).items():
        b[mask] = value
    shell = Interactions(n=n, values=np.zeros(1 << n), and_terms=a, or_terms=b, q=np.zeros(1 << n), tau=0.0,
                         qthres=0.0, mode="and-or", objective=float(np.abs(a).sum() + np.abs(b).sum()),
                         dual_bound=0.0, gap=0.0, iterations=0)
    shell.values = shell.reconstruct()
    return shell


def test_sparsity_order_profile_and_cancellation_by_hand() -> None:
    # v(N) = 4 - 1 + 2 = 5; salient cut 0.05 * 4 = 0.2 drops the 0.1 term
    result = build(3, {0b001: 4.0, 0b011: -1.0, 0b110: 0.1}, {0b101: 2.0})
    metrics = compute_metrics(result)
    assert metrics.sparsity == 3
    assert metrics.normaliser == pytest.approx(5.1)
    assert metrics.order_profile.positive == pytest.approx([4.0 / 5.1, 2.0 / 5.1, 0.0])
    assert metrics.order_profile.negative == pytest.approx([0.0, 1.0 / 5.1, 0.0])
    assert metrics.cancellation == pytest.approx(2 * 1.0 / 7.0)
    # regions: player 0 has +4, -1, +2 -> 1/6 >= 0.1; player 1: -1 only -> 0; player 2: +2 -> 0
    assert metrics.regional_cancellation == pytest.approx(1 / 3)


def test_misattribution_counts_terms_touching_unreliable_players() -> None:
    result = build(3, {0b001: 3.0, 0b110: 1.0, 0b100: 1.0})
    metrics = compute_metrics(result, ["relevant", "unlabelled", "irrelevant"])
    assert metrics.misattribution == pytest.approx(2.0 / 5.0)
    assert compute_metrics(result, ["relevant", "forbidden", "unlabelled"]).misattribution == pytest.approx(1 / 5)
    assert compute_metrics(result, ["relevant"] * 3).misattribution is None
    assert compute_metrics(result).misattribution is None
    with pytest.raises(ValueError, match="labels"):
        compute_metrics(result, ["relevant"])


def test_overfitting_fit_recovers_known_mixtures() -> None:
    n = 10
    assert fit_overfitting(decay_template(n)).score == pytest.approx(0.0, abs=1e-9)
    assert fit_overfitting(spindle_template(n)).score == pytest.approx(1.0, abs=1e-9)
    mixed = 0.3 * spindle_template(n) + 0.7 * decay_template(n)
    assert fit_overfitting(mixed * 42.0).score == pytest.approx(0.3, abs=1e-9)


def test_noise_games_look_spindle_shaped_and_planted_low_order_games_do_not() -> None:
    n = 8
    index = np.arange(1 << n)
    bit = lambda i: (index >> i) & 1  # noqa: E731
    rng = np.random.default_rng(0)
    low_order = 3.0 * bit(0) + 2.0 * (bit(1) & bit(2)) + 1.0 * bit(3) + rng.normal(0, 0.01, 1 << n)
    noise = rng.normal(size=1 << n)
    low = compute_metrics(extract_interactions(low_order)).overfitting
    high = compute_metrics(extract_interactions(noise)).overfitting
    assert low < 0.2 < 0.6 < high


def test_strength_by_order_sums_all_terms() -> None:
    result = build(4, {0b0001: 1.0, 0b0011: -2.0}, {0b1100: 0.5, 0b1110: 0.25})
    assert strength_by_order(result).tolist() == [1.0, 2.5, 0.25, 0.0]


def test_window_fit_adds_strength_profiles() -> None:
    n = 6
    # every subset equally strong: strength per order is C(n, m), the spindle template exactly
    spindle_game = build(n, {mask: 1.0 for mask in range(1, 1 << n)})
    # one set per order carrying the decay template's mass, as much strength in all (63) as the spindle game
    decay_game = build(n, {(1 << m) - 1: 63.0 * float(w) for m, w in enumerate(decay_template(n), start=1)})
    assert fit_overfitting(strength_by_order(spindle_game)).score == pytest.approx(1.0)
    assert fit_overfitting(strength_by_order(decay_game)).score == pytest.approx(0.0, abs=1e-9)
    assert overfitting_over_window([spindle_game, decay_game]).score == pytest.approx(0.5)
    assert overfitting_over_window([]).score == 0.0


def test_window_fit_accepts_requests_with_different_numbers_of_players() -> None:
    # a window mixes prompts with 8, 9 and 10 players: each is fitted against its own n's templates
    spindle_6 = build(6, {mask: 1.0 for mask in range(1, 1 << 6)})
    spindle_5 = build(5, {mask: 1.0 for mask in range(1, 1 << 5)})
    # strength 47 each: two of them weigh as much as the two spindles (63 + 31)
    decay_4 = build(4, {(1 << m) - 1: 47.0 * float(w) for m, w in enumerate(decay_template(4), start=1)})
    assert overfitting_over_window([spindle_6, spindle_5]).score == pytest.approx(1.0)
    assert overfitting_over_window([decay_4]).score == pytest.approx(0.0, abs=1e-9)
    mixed = overfitting_over_window([spindle_6, decay_4, spindle_5, decay_4])
    assert 0.3 < mixed.score < 0.7 and len(mixed.profile) == 4  # the most common n is reported
    # equal n: the stacked fit is the fit of the summed strength profile (same normal equations)
    rng = np.random.default_rng(1)
    games = [build(6, {int(m): float(rng.normal()) for m in rng.integers(1, 64, 12)}) for _ in range(5)]
    mean_profile = np.sum([strength_by_order(g) for g in games], axis=0)
    assert overfitting_over_window(games).score == pytest.approx(fit_overfitting(mean_profile).score, abs=1e-9)


def test_amplification_is_strength_over_output() -> None:
    # v(N) = 4 - 1 + 2 = 5, total strength 7: 2 units cancel
    result = build(3, {0b001: 4.0, 0b011: -1.0}, {0b101: 2.0})
    assert amplification(result) == pytest.approx(7.0 / 5.0)
    assert compute_metrics(result).overfitting_fit.strength == pytest.approx(7.0)
    assert amplification(build(2, {0b01: 1.0, 0b10: -1.0})) is None  # the output does not move
    with pytest.raises(ValueError, match="weights"):
        fit_window([np.ones(3)], [1.0, 2.0])


def _theory_request(rng: np.random.Generator, n: int, noise_strength: float) -> Interactions:
    """A request built from the theory's two kinds of interaction, with a known non-generalizable strength.

    Generalizable: one sign-coherent AND term per order, strengths following the decay template
    (total 1). Non-generalizable: the Harsanyi dividends of i.i.d. Gaussian outputs (the noise model
    behind the spindle), rescaled to total strength ``noise_strength``. They sum to almost nothing,
    so v(N) stays about 1 whatever the noise, as a memorised pattern adds strength but no output.
    """
    terms = np.zeros(1 << n)
    for order, weight in enumerate(decay_template(n), start=1):
        players = rng.choice(n, order, replace=False)
        terms[int(sum(1 << int(p) for p in players))] += weight
    noise = and_transform(torch.tensor(rng.standard_normal(1 << n))).numpy()
    noise[0] = 0.0
    terms += noise * (noise_strength / np.abs(noise).sum())
    return build(n, {mask: float(value) for mask, value in enumerate(terms) if value != 0.0})


def test_window_score_recovers_the_planted_non_generalizable_share() -> None:
    """Oracle: the share of the window's strength that was planted as noise, known by construction.

    Window B is the case unit-mass pooling got wrong: half its requests are clean and half are
    dominated by noise ten times their output. Its true share (100 / 120) is the largest, but each
    request scaled to unit mass weighs as much as a clean one, which ranked it below window A.
    """
    rng = np.random.default_rng(7)
    n = 8
    windows = {
        "C": [0.25] * 12,
        "A": [1.0] * 12,
        "D": [3.0] * 12,
        "B": [10.0] * 6 + [0.0] * 6,
    }
    truth, scores, unit_mass = {}, {}, {}
    for name, strengths in windows.items():
        requests = [_theory_request(rng, n, s) for s in strengths]
        truth[name] = sum(strengths) / (sum(strengths) + len(strengths))
        scores[name] = overfitting_over_window(requests).score
        unit_mass[name] = fit_window([strength_by_order(r) for r in requests]).score
    for name in windows:
        # the spindle template is C(n, m); noise dividends grow like C(n, m) 2^(m/2): a small upward bias
        assert scores[name] == pytest.approx(truth[name], abs=0.1), (name, scores[name], truth[name])
    assert sorted(windows, key=scores.get) == sorted(windows, key=truth.get) == ["C", "A", "D", "B"]
    assert unit_mass["B"] < unit_mass["A"]  # what the previous pooling did


def test_faithfulness_of_an_exact_sparse_game() -> None:
    result = extract_interactions(build(5, {0b00011: 2.0, 0b00100: 1.0}).values)
    faith = compute_metrics(result).faithfulness
    assert faith.max_q_ratio <= 0.04 + 1e-12
    assert faith.salient_reconstruction_error <= 0.04
    assert faith.certified_gap <= 1e-6
