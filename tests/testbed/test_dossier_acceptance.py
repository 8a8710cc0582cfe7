"""`interaction-auditor testbed validate --world dossier`, end to end: the dossier world's acceptance.

Gated behind ``AUDITOR_DOSSIER_ACCEPTANCE=1``: building the dossier family and auditing it (7 models x
40 case files of up to 2^10 masks of ~170 tokens) takes tens of minutes on two cores even with the
models cached (docs/testbed.md, "Dossier world"), which the suite's 15-minute budget cannot carry.
A cache alone does not turn it on, so a machine that once built the family keeps a fast suite.
``AUDITOR_DOSSIER_SEEDS=0,1,2,3`` runs it on those seeds (default: seed 0), the issue's acceptance.
Like ``test_acceptance.py`` it checks the command's verdict (each figure at its target in >= 90% of
the bootstrap resamples too) and recomputes both figures from the per-prompt numbers it printed with
independent formulas.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest

from auditor.cli import main
from auditor.testbed.names import CLEAN, MODEL_NAMES, OVERFIT_FAMILY, SHORTCUT
from tests.testbed.test_acceptance import _pairwise_auc

PROMPTS = 40
SEEDS = [int(seed) for seed in os.environ.get("AUDITOR_DOSSIER_SEEDS", "0").split(",")]


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("AUDITOR_DOSSIER_ACCEPTANCE") != "1",
                       reason="the dossier acceptance takes tens of minutes: set AUDITOR_DOSSIER_ACCEPTANCE=1"),
]


def _average_ranks(values: list[float]) -> list[float]:
    """Ranks from 1, tied values sharing the mean of their ranks (passage-level window scores tie at 0)."""
    return [sum(1 for w in values if w < v) + (sum(1 for w in values if w == v) + 1) / 2 for v in values]


def _spearman_with_ties(x: list[float], y: list[float]) -> float:
    """Pearson's correlation of the average ranks, written out (the definition scipy implements)."""
    rx, ry = _average_ranks(x), _average_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


@pytest.fixture(scope="module", params=SEEDS, ids=lambda seed: f"seed{seed}")
def validation(request) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["testbed", "validate", "--prompts", str(PROMPTS), "--world", "dossier",
                     "--seed", str(request.param), "--json"])
    return code, json.loads(out.getvalue())


def test_the_dossier_world_meets_the_acceptance(validation) -> None:
    code, report = validation
    assert report["misattribution_auc"] >= 0.95, report["models"]
    assert report["stability_target"] == 0.9 and report["misattribution_stability"] >= 0.9
    # The Spearman in 90% of the resamples, or (the owners' second rule) at least as reliable as
    # the prompts' own gold-answer losses on the same resamples.
    assert (report["overfitting_spearman"] >= 0.9 - 1e-9 and report["overfitting_stability"] >= 0.9) or (
        report["overfitting_stability"] >= report["loss_stability"]), report["models"]
    assert report["accepted"] is True and code == 0


def test_dossier_figures_recomputed_from_the_printed_numbers(validation) -> None:
    _, report = validation
    per_prompt = report["per_prompt"]
    assert set(per_prompt) == set(MODEL_NAMES)
    auc = _pairwise_auc(per_prompt[SHORTCUT]["misattribution"], per_prompt[CLEAN]["misattribution"])
    assert auc == pytest.approx(report["misattribution_auc"], abs=1e-12)
    rows = {row["model"]: row for row in report["models"]}
    scores = [rows[name]["overfitting"] for name in OVERFIT_FAMILY]
    gaps = [rows[name]["generalization_gap"] for name in OVERFIT_FAMILY]
    assert _spearman_with_ties(scores, gaps) == pytest.approx(report["overfitting_spearman"], abs=1e-9)
    for name in MODEL_NAMES:
        assert rows[name]["prompts"] == PROMPTS
        # passage players: one strength per order 1..n, n = 6..10 passages
        assert all(6 <= len(profile) <= 10 for profile in per_prompt[name]["strength_by_order"])
    assert rows[CLEAN]["heldout_accuracy"] > 0.95
