"""`interaction-auditor testbed validate --world dossier`, end to end: the dossier world's acceptance.

Gated behind ``AUDITOR_DOSSIER_ACCEPTANCE=1``: building the dossier family and auditing it (7 models x
40 case files of up to 2^10 masks of ~170 tokens) takes tens of minutes on two cores even with the
models cached (docs/testbed.md, "Dossier world"), which the suite's 15-minute budget cannot carry.
A cache alone does not turn it on, so a machine that once built the family keeps a fast suite. Like
``test_acceptance.py`` it checks the command's verdict and recomputes both figures from the
per-prompt numbers it printed with independent formulas.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest

from auditor.cli import main
from auditor.testbed.names import CLEAN, MODEL_NAMES, OVERFIT_FAMILY, SHORTCUT
from tests.testbed.test_acceptance import _pairwise_auc, _spearman_without_ties

PROMPTS = 40
WORLD = ["--world", "dossier", "--seed", "0"]


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("AUDITOR_DOSSIER_ACCEPTANCE") != "1",
                       reason="the dossier acceptance takes tens of minutes: set AUDITOR_DOSSIER_ACCEPTANCE=1"),
]


@pytest.fixture(scope="module")
def validation() -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["testbed", "validate", "--prompts", str(PROMPTS), *WORLD, "--json"])
    return code, json.loads(out.getvalue())


def test_the_dossier_world_meets_the_acceptance(validation) -> None:
    code, report = validation
    assert report["misattribution_auc"] >= 0.95, report["models"]
    assert report["overfitting_ok"], report["models"]
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
    assert _spearman_without_ties(scores, gaps) == pytest.approx(report["overfitting_spearman"], abs=1e-9)
    for name in MODEL_NAMES:
        assert rows[name]["prompts"] == PROMPTS
        # passage players: one strength per order 1..n, n = 6..10 passages
        assert all(6 <= len(profile) <= 10 for profile in per_prompt[name]["strength_by_order"])
    assert rows[CLEAN]["heldout_accuracy"] > 0.95
