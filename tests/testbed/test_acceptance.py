"""`interaction-auditor testbed validate`, end to end: the acceptance of issue 4.

This is the one test that builds a whole testbed (about four minutes on two cores) and audits every
model on 20 conflict prompts. It runs on seed 1 with the alternate templates, not on the default
world: both are accepted (docs/testbed.md), but the default world meets the Spearman target exactly
(one adjacent swap among five levels is 0.9; the verdict holds in 67% of bootstrap resamples of its
prompts), while seed 1 orders all five levels with margins of 0.11 or more (99% of resamples), so a
machine whose floats differ in the last bit cannot flip the verdict. It checks the command's own verdict and recomputes both acceptance
figures from the per-prompt numbers it printed with independent formulas (pairwise counting for the
AUC, ranks by hand for the Spearman coefficient), so a wrong aggregation cannot pass.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from auditor.cli import main
from auditor.testbed.names import CLEAN, MODEL_NAMES, OVERFIT_FAMILY, SHORTCUT

PROMPTS = 20
WORLD = ["--seed", "1", "--template-set", "alternate"]
REFERENCE_PROMPTS = 2  # one joint LP per model and prompt (seconds each): two keep the test cheap

pytestmark = pytest.mark.slow


def _pairwise_auc(positives: list[float], negatives: list[float]) -> float:
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in positives for q in negatives)
    return wins / (len(positives) * len(negatives))


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    for rank, index in enumerate(order):
        ranks[index] = float(rank)
    return ranks


def _spearman_without_ties(x: list[float], y: list[float]) -> float:
    assert len(set(x)) == len(x) and len(set(y)) == len(y), "the closed form below assumes no ties"
    n = len(x)
    d2 = sum((a - b) ** 2 for a, b in zip(_ranks(x), _ranks(y)))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


@pytest.fixture(scope="module")
def validation() -> tuple[int, dict]:
    """Run the command once for the module (minutes); tests read its JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["testbed", "validate", "--prompts", str(PROMPTS), *WORLD, "--reference-prompts",
                     str(REFERENCE_PROMPTS), "--json"])
    return code, json.loads(out.getvalue())


def test_validate_meets_the_acceptance(validation) -> None:
    code, report = validation
    assert report["misattribution_auc"] >= 0.95, report["models"]
    assert report["overfitting_spearman"] >= 0.9, report["models"]
    assert report["accepted"] is True and code == 0


def test_verdict_stability_is_reported(validation) -> None:
    _, report = validation
    assert report["resamples"] == 500
    for key in ("misattribution_stability", "overfitting_stability", "fragility_stability", "loss_stability"):
        assert 0.0 <= report[key] <= 1.0, key
    assert -1.0 <= report["fragility_spearman"] <= 1.0


def test_acceptance_figures_recomputed_from_the_printed_numbers(validation) -> None:
    _, report = validation
    per_prompt = report["per_prompt"]
    auc = _pairwise_auc(per_prompt[SHORTCUT]["misattribution"], per_prompt[CLEAN]["misattribution"])
    assert auc == pytest.approx(report["misattribution_auc"], abs=1e-12)

    rows = {row["model"]: row for row in report["models"]}
    assert report["family"] == list(OVERFIT_FAMILY)
    scores = [rows[name]["overfitting"] for name in OVERFIT_FAMILY]
    gaps = [rows[name]["generalization_gap"] for name in OVERFIT_FAMILY]
    assert _spearman_without_ties(scores, gaps) == pytest.approx(report["overfitting_spearman"], abs=1e-9)

    # The reference: the audited prompts' own gold-answer losses, ranked against the same gaps.
    losses = [sum(per_prompt[name]["answer_loss"]) / PROMPTS for name in OVERFIT_FAMILY]
    assert losses == pytest.approx([rows[name]["answer_loss"] for name in OVERFIT_FAMILY], abs=1e-12)
    assert _spearman_without_ties(losses, gaps) == pytest.approx(report["loss_spearman"], abs=1e-9)


def test_every_model_reports_its_measurements(validation) -> None:
    _, report = validation
    rows = {row["model"]: row for row in report["models"]}
    assert set(rows) == set(MODEL_NAMES)
    for name, row in rows.items():
        assert row["prompts"] == PROMPTS, name
        assert row["sparsity"] >= 1 and row["sparsity"] < 2 ** 12, name  # salient terms per prompt, at most 2^(n+1)
        assert 0.0 <= row["cancellation"] <= 1.0, name
        assert 0.0 <= row["misattribution"] <= 1.0, name
        assert 0.0 <= row["heldout_accuracy"] <= 1.0 and math.isfinite(row["generalization_gap"]), name
        assert len(report["per_prompt"][name]["sparsity"]) == PROMPTS
        # the experimental fragility figure is measured for every model, on every prompt
        assert len(report["per_prompt"][name]["fragility"]) == PROMPTS and row["fragility"] > 0, name
    # The planted flaws are there: the clean model generalizes, the family's gap grows from ~0.
    assert rows[CLEAN]["heldout_accuracy"] > 0.95 and abs(rows[CLEAN]["generalization_gap"]) < 0.1
    family_gaps = [rows[name]["generalization_gap"] for name in OVERFIT_FAMILY]
    assert family_gaps[0] < 0.2 < 1.0 < family_gaps[-1]


def test_the_trial_and_the_reference_column_are_reported(validation) -> None:
    _, report = validation
    per_prompt = report["per_prompt"]
    # the cancellation-aware trial: defined on the same prompts as the score, never above it
    for name in MODEL_NAMES:
        net, score = per_prompt[name]["misattribution_net"], per_prompt[name]["misattribution"]
        assert len(net) == len(score) and all(0.0 <= n <= s + 1e-12 for n, s in zip(net, score)), name
    auc = _pairwise_auc(per_prompt[SHORTCUT]["misattribution_net"], per_prompt[CLEAN]["misattribution_net"])
    assert auc == pytest.approx(report["misattribution_net_auc"], abs=1e-12)
    assert 0.0 <= report["misattribution_net_stability"] <= 1.0
    # the share not shared with the clean model: for every other model, on the first prompts
    assert report["reference_prompts"] == REFERENCE_PROMPTS
    rows = {row["model"]: row for row in report["models"]}
    assert per_prompt[CLEAN]["unshared_with_reference"] == [] and rows[CLEAN]["unshared_with_reference"] is None
    for name in [SHORTCUT, *OVERFIT_FAMILY]:
        shares = per_prompt[name]["unshared_with_reference"]
        assert len(shares) == REFERENCE_PROMPTS and all(0.0 <= share <= 1.0 for share in shares), name
