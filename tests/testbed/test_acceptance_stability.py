"""How often a validation verdict survives resampling its prompts (``acceptance.*_stability``).

The oracle is exact: with three prompts there are only 3^3 = 27 equally likely bootstrap draws (and
2^2 x 3^3 = 108 for a two-sample draw of 2 and 3 values), so the true probability that a resample
meets the target is a count over all of them. The Monte Carlo shares must land within four
standard errors of it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from auditor.testbed import acceptance
from auditor.metrics.audit_metrics import decay_template, overfitting_from_profiles, spindle_template
from auditor.testbed.acceptance import ModelReport, fragility_stability, misattribution_stability, overfitting_stability

N = 8  # players per prompt


def _prompt(spindle_share: float, strength: float) -> list[float]:
    """A strength-per-order profile (nats) with a known mix of the two templates."""
    profile = (1.0 - spindle_share) * decay_template(N) + spindle_share * spindle_template(N)
    return (strength * profile).tolist()


def _model(name: str, gap: float, prompts: list[list[float]]) -> ModelReport:
    return ModelReport(name=name, heldout_accuracy=0.9, train_accuracy=1.0, generalization_gap=gap,
                       strength_by_order=prompts)


def _family_out_of_order(prompts: int, overrides: dict[int, tuple[int, float]]) -> list[ModelReport]:
    """Five levels whose spindle share grows with the gap on every prompt but the overridden ones:
    ``overrides[level] = (prompt, share)`` puts that level out of order on that prompt."""
    def level(k: int) -> list[list[float]]:
        shares = [0.1 + 0.15 * k] * prompts
        if k in overrides:
            prompt, share = overrides[k]
            shares[prompt] = share
        return [_prompt(share, 5.0) for share in shares]

    return [_model(f"level-{k}", gap=0.5 * k, prompts=level(k)) for k in range(5)]


def _exact_share(family: list[ModelReport], draws: list[tuple[int, ...]] | None = None) -> float:
    """P(Spearman >= target) over equally likely draws of prompt indices (default: every bootstrap
    draw), by enumeration."""
    count = len(family[0].strength_by_order)
    gaps = [model.generalization_gap for model in family]
    met = 0
    if draws is None:
        draws = list(itertools.product(range(count), repeat=count))
    for draw in draws:
        scores = [overfitting_from_profiles([m.strength_by_order[i] for i in draw]).score for m in family]
        ranks_scores = np.argsort(np.argsort(scores))
        ranks_gaps = np.argsort(np.argsort(gaps))
        n = len(scores)
        rho = 1 - 6 * float(((ranks_scores - ranks_gaps) ** 2).sum()) / (n * (n * n - 1))
        met += len(set(np.round(scores, 12))) == n and rho >= acceptance.OVERFITTING_SPEARMAN_TARGET - 1e-9
    return met / len(draws)


def test_a_family_ordered_on_every_prompt_is_stable_everywhere():
    family = [_model(f"level-{k}", gap=0.5 * k, prompts=[_prompt(0.1 + 0.15 * k, s) for s in (3.0, 10.0, 30.0)])
              for k in range(5)]
    assert overfitting_stability(family, resamples=200) == 1.0


def test_levels_that_swap_on_some_prompts_match_the_exact_bootstrap_probability():
    # Level 0 outscores level 1 whenever prompt 1 is drawn (and more levels when it is drawn twice),
    # level 2 outscores level 3 whenever prompt 2 is: one swap still meets 0.9, more do not.
    family = _family_out_of_order(3, {0: (1, 0.65), 2: (2, 0.95)})
    exact = _exact_share(family)
    assert 0.1 < exact < 0.9  # not degenerate: the verdict depends on the draw
    resamples = 4000
    estimate = overfitting_stability(family, resamples=resamples)
    assert abs(estimate - exact) < 4 * math.sqrt(exact * (1 - exact) / resamples)


def test_tied_scores_count_as_a_miss():
    same = [_prompt(0.4, 5.0), _prompt(0.2, 9.0)]
    family = [_model(f"level-{k}", gap=float(k), prompts=same) for k in range(5)]
    assert overfitting_stability(family, resamples=50) == 0.0


def test_nothing_to_resample_gives_none():
    family = [_model("a", 0.1, [_prompt(0.2, 1.0)]), _model("b", 0.2, [])]
    assert overfitting_stability(family, resamples=10) is None
    assert overfitting_stability(family[:1], resamples=10) is None
    assert misattribution_stability([], [0.1], resamples=10) is None
    assert misattribution_stability([0.9], [0.1], resamples=0) is None


def test_misattribution_stability_matches_the_exact_two_sample_bootstrap():
    positives, negatives = [0.9, 0.3], [0.1, 0.5, 0.2]
    met = total = 0
    for pos in itertools.product(positives, repeat=len(positives)):
        for neg in itertools.product(negatives, repeat=len(negatives)):
            wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
            met += wins / (len(pos) * len(neg)) >= acceptance.MISATTRIBUTION_AUC_TARGET - 1e-9
            total += 1
    exact = met / total
    resamples = 4000
    estimate = misattribution_stability(positives, negatives, resamples=resamples)
    assert 0.1 < exact < 0.9
    assert abs(estimate - exact) < 4 * math.sqrt(exact * (1 - exact) / resamples)


def test_stability_is_reproducible():
    family = [_model(f"level-{k}", gap=float(k), prompts=[_prompt(0.2 + 0.1 * k + 0.3 * (i == k), 1.0 + i)
                                                           for i in range(4)]) for k in range(5)]
    assert overfitting_stability(family, resamples=300) == overfitting_stability(family, resamples=300)


@pytest.mark.parametrize("resamples", [0, 50])
def test_report_carries_the_stability_only_when_resampled(resamples):
    family = [_model(f"level-{k}", gap=float(k), prompts=[_prompt(0.1 + 0.2 * k, 4.0)]) for k in range(4)]
    report = acceptance.ValidationReport(models=family, misattribution_auc=1.0, overfitting_spearman=1.0,
                                         family=[m.name for m in family], resamples=resamples,
                                         overfitting_stability=overfitting_stability(family, resamples) if resamples
                                         else None)
    payload = report.to_dict()
    assert payload["resamples"] == resamples
    assert payload["overfitting_stability"] == (1.0 if resamples else None)


def test_fragility_stability_follows_the_per_prompt_order():
    def family(direction: float) -> list[ModelReport]:
        models = []
        for k in range(5):
            model = _model(f"level-{k}", gap=float(k), prompts=[_prompt(0.3, 1.0)] * 6)
            model.fragility = [0.05 + direction * 0.02 * k + 0.001 * i for i in range(6)]
            models.append(model)
        return models

    assert fragility_stability(family(+1.0), resamples=100) == 1.0
    assert fragility_stability(family(-1.0), resamples=100) == 0.0


def test_loss_stability_matches_the_exact_bootstrap_of_mean_losses():
    # Level 1 was confidently wrong on prompt 2 and level 4 lucky on prompt 1: a draw with either
    # swaps a pair, one with both misses the target. The reference ranking is as fragile as the
    # sample, which is what it is there to show.
    losses = {0: [0.0, 0.1, 0.2], 1: [0.1, 0.2, 6.0], 2: [1.5, 1.45, 1.6], 3: [3.0, 3.2, 2.9], 4: [4.0, 0.5, 4.2]}
    family = []
    for k, values in losses.items():
        model = _model(f"level-{k}", gap=0.5 * k, prompts=[_prompt(0.3, 1.0)] * 3)
        model.answer_loss = values
        family.append(model)
    draws = list(itertools.product(range(3), repeat=3))
    met = 0
    for draw in draws:
        means = [np.mean([model.answer_loss[i] for i in draw]) for model in family]
        ranks = np.argsort(np.argsort(means))
        rho = 1 - 6 * float(((ranks - np.arange(5)) ** 2).sum()) / (5 * 24)
        assert len(set(np.round(means, 9))) == 5, draw  # no ties, so ranks need no averaging
        met += rho >= acceptance.OVERFITTING_SPEARMAN_TARGET - 1e-9
    exact = met / len(draws)
    assert 0.1 < exact < 0.9
    resamples = 4000
    estimate = acceptance.loss_stability(family, resamples=resamples)
    assert abs(estimate - exact) < 4 * math.sqrt(exact * (1 - exact) / resamples)


def test_the_printed_table_shows_the_reference_next_to_the_verdict():
    from rich.console import Console

    from auditor.cli.validation_tables import validation_tables as _validation_tables

    family = []
    for k in range(5):
        model = _model(f"overfit-{k + 1}", gap=0.5 * k, prompts=[_prompt(0.1 + 0.15 * k, 5.0)] * 3)
        model.answer_loss = [0.3 * k + 0.01 * i for i in range(3)]
        family.append(model)
    report = acceptance.ValidationReport(
        models=family, misattribution_auc=1.0, overfitting_spearman=0.9, family=[m.name for m in family],
        resamples=50, overfitting_stability=0.5, loss_spearman=1.0, loss_stability=acceptance.loss_stability(family, 50),
    )
    console = Console(record=True, width=250)
    for table in _validation_tables(report):
        console.print(table)
    text = console.export_text()
    reference = next(line for line in text.splitlines() if "gold-answer loss" in line)
    assert "1.000" in reference and "100%" in reference and "pass" not in reference
    assert f"{0.3 * 4 + 0.01:.3f}" in next(line for line in text.splitlines() if "overfit-5" in line)


def test_the_printed_table_shows_the_subset_shares_when_asked():
    from rich.console import Console

    from auditor.cli.validation_tables import validation_tables as _validation_tables

    family = _swapping_family()
    for model in family:
        model.answer_loss = [1.0] * 4
    report = acceptance.ValidationReport(
        models=family, misattribution_auc=1.0, overfitting_spearman=0.9, family=[m.name for m in family],
        resamples=40, subsample=2, overfitting_subsample_share=0.25, loss_subsample_share=0.0, loss_spearman=0.0,
    )
    console = Console(record=True, width=300)
    for table in _validation_tables(report):
        console.print(table)
    text = console.export_text()
    assert "met by 2 of the prompts (40 subsets)" in text
    overfitting = next(line for line in text.splitlines() if "overfitting Spearman" in line)
    assert overfitting.rstrip(" │|").endswith("25%")


def _swapping_family() -> list[ModelReport]:
    """Five levels over four prompts; prompt 3 swaps levels 0 and 1, prompt 2 levels 3 and 4."""
    return _family_out_of_order(4, {0: (3, 0.9), 4: (2, 0.05)})


def test_subsample_share_matches_the_exact_share_of_subsets():
    # Every 2-of-4 subset is equally likely, so the true share is a count over the six of them.
    family = _swapping_family()
    exact = _exact_share(family, list(itertools.combinations(range(4), 2)))
    assert 0.1 < exact < 0.9
    resamples = 4000
    estimate = overfitting_stability(family, resamples=resamples, size=2)
    assert abs(estimate - exact) < 4 * math.sqrt(exact * (1 - exact) / resamples)
    # a bootstrap of the same four prompts answers a different question, with a different number
    assert abs(overfitting_stability(family, resamples=resamples) - exact) > 0.05


def test_a_subset_of_every_prompt_is_the_verdict_itself():
    family = _swapping_family()
    scores = [overfitting_from_profiles(m.strength_by_order).score for m in family]
    from scipy.stats import spearmanr

    verdict = spearmanr(scores, [m.generalization_gap for m in family]).statistic >= 0.9 - 1e-9
    assert overfitting_stability(family, resamples=20, size=4) == float(verdict)
    with pytest.raises(ValueError, match="cannot be drawn"):
        overfitting_stability(family, resamples=20, size=5)


@pytest.mark.parametrize(
    ("spearman", "estimator", "reference", "accepted"),
    [
        (0.8, 0.70, 0.60, True),   # below 0.9, but meets it in more of the same draws than the gold loss
        (0.8, 0.60, 0.60, True),   # "at least as reliable": a tie is enough
        (0.8, 0.50, 0.60, False),  # less reliable than the reference
        (0.95, 0.10, 0.90, True),  # Spearman >= 0.9 alone still accepts
        (0.8, None, None, False),  # without resamples only the Spearman counts
    ],
)
def test_overfitting_is_accepted_at_spearman_or_when_as_reliable_as_the_reference(
    spearman, estimator, reference, accepted
) -> None:
    report = acceptance.ValidationReport(
        models=[], misattribution_auc=1.0, overfitting_spearman=spearman, resamples=0 if estimator is None else 500,
        overfitting_stability=estimator, loss_stability=reference,
    )
    assert report.overfitting_ok is accepted
    assert report.to_dict()["overfitting_ok"] is accepted
    assert report.accepted is accepted


def test_the_table_says_when_the_ranking_passes_by_reliability():
    from rich.console import Console

    from auditor.cli.validation_tables import validation_tables as _validation_tables

    family = _swapping_family()
    for model in family:
        model.answer_loss = [1.0] * 4
    report = acceptance.ValidationReport(
        models=family, misattribution_auc=1.0, overfitting_spearman=0.8, family=[m.name for m in family],
        resamples=40, overfitting_stability=0.7, loss_spearman=0.7, loss_stability=0.6,
    )
    console = Console(record=True, width=300)
    for table in _validation_tables(report):
        console.print(table)
    overfitting = next(line for line in console.export_text().splitlines() if "overfitting Spearman" in line)
    assert "pass (as reliable as the reference)" in overfitting and "70%" in overfitting


def test_a_world_that_requires_stability_fails_a_point_estimate_that_holds_in_too_few_resamples():
    """The dossier world's rule (issue 19): each figure meets its target in >= 90% of resamples too.
    The dossier seed-0 case of 2026-12-06: AUC 0.959 at the point, met in 64% of resamples."""
    shortcut = [1.0] * 36 + [0.6] * 4
    clean = [0.05] * 37 + [1.0] * 3
    auc = acceptance.per_prompt_auc(shortcut, clean)
    assert auc == pytest.approx(1 - 3 / 40 * (4 / 40 + 0.5 * 36 / 40))  # ties count one half (Mann-Whitney)
    stability = misattribution_stability(shortcut, clean, 500)
    assert auc >= acceptance.MISATTRIBUTION_AUC_TARGET and stability < acceptance.STABILITY_TARGET
    common = dict(models=[], misattribution_auc=auc, misattribution_stability=stability,
                  overfitting_spearman=1.0, overfitting_stability=0.95, resamples=500)
    assert acceptance.ValidationReport(**common).accepted  # the judgment world: the point estimate decides
    required = acceptance.ValidationReport(**common, stability_target=acceptance.STABILITY_TARGET)
    assert not required.misattribution_ok and required.overfitting_ok and not required.accepted
    assert required.to_dict()["stability_target"] == 0.9
    # The Spearman too: met at the point in too few resamples fails, unless as reliable as the reference.
    shaky = dict(common, misattribution_stability=1.0, overfitting_stability=0.85)
    assert not acceptance.ValidationReport(**shaky, stability_target=0.9).overfitting_ok
    assert acceptance.ValidationReport(**shaky, stability_target=0.9, loss_stability=0.8).overfitting_ok
    # A required share that was never measured is not met.
    assert not acceptance.ValidationReport(**dict(common, misattribution_stability=None), stability_target=0.9).accepted


def test_the_printed_table_names_the_stability_target_and_fails_a_point_estimate_that_misses_it():
    from rich.console import Console

    from auditor.cli.validation_tables import validation_tables as _validation_tables

    report = acceptance.ValidationReport(
        models=[], misattribution_auc=0.959, misattribution_stability=0.644, overfitting_spearman=0.975,
        overfitting_stability=0.99, resamples=500, stability_target=acceptance.STABILITY_TARGET,
    )
    console = Console(record=True, width=250)
    for table in _validation_tables(report):
        console.print(table)
    lines = console.export_text().splitlines()
    auc = next(line for line in lines if "misattribution AUC" in line)
    spearman = next(line for line in lines if "overfitting Spearman" in line)
    assert "in >= 90% of resamples" in auc and "FAIL" in auc and "64%" in auc
    assert "in >= 90% of resamples" in spearman and "pass" in spearman and "99%" in spearman


def test_the_per_request_trial_ranks_by_the_mean_of_each_prompts_own_score():
    """Each level: one strong decay-shaped prompt and weak ones whose spindle share grows with the
    gap; the trial's resample share against a resampler written here from numpy alone."""
    strong = _prompt(0.0, 40.0)
    family = [_model(f"level-{k}", gap=0.5 * k, prompts=[strong] + [_prompt(0.1 + 0.2 * k, 1.0)] * 3)
              for k in range(5)]
    for model in family:
        model.overfitting = [overfitting_from_profiles([profile]).score for profile in model.strength_by_order]
    means = [float(np.mean(model.overfitting)) for model in family]
    assert means == sorted(means) and len(set(means)) == 5
    assert acceptance.per_request_stability(family, 200) == pytest.approx(
        _ranking_share(family, lambda m, draw: float(np.mean([m.overfitting[i] for i in draw]))), abs=0.1)


def _ranking_share(family: list[ModelReport], score, resamples: int = 200) -> float:
    """Independent of the library's resampler: plain bootstrap draws of prompt indices with the
    rank correlation from numpy ranks (no ties in these scores)."""
    rng = np.random.default_rng(1)
    count = len(family[0].overfitting)
    gaps = np.argsort(np.argsort([m.generalization_gap for m in family]))
    met = 0
    for _ in range(resamples):
        draw = rng.integers(0, count, count)
        ranks = np.argsort(np.argsort([score(m, draw) for m in family]))
        met += np.corrcoef(ranks, gaps)[0, 1] >= 0.9 - 1e-9
    return met / resamples
