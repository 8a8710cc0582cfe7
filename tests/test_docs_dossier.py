"""docs/dossier_tables.py, the script behind every table of docs/testbed.md's "Dossier world": the page
shows exactly the rendering of the kept runs, the verdict is today's rule recomputed from a run's
figures, and the per-file trial is recomputed from its per-prompt numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dossier():
    return load_script("docs/dossier_tables.py", "docs_dossier_tables")


def test_every_marked_table_of_the_page_is_the_rendering_of_the_kept_runs(dossier) -> None:
    data = json.loads((REPO / "docs" / "dossier-measured.json").read_text())
    page = (REPO / "docs" / "testbed.md").read_text()
    rendered = dossier.tables(data)
    assert set(rendered) >= {"dossier-acceptance", "dossier-seed0", "dossier-family", "dossier-before-seed0"}
    for name, text in rendered.items():
        assert dossier.shown(page, name) == text, name
    assert set(data[dossier.FINAL]) >= {"0", "1", "2", "3"}  # the seeds


def _validation(auc_share: float, shares: list[list[float]], gaps: list[float]) -> dict:
    """A validate --json of seven models; the family's per-prompt overfitting scores are ``shares``."""
    names = ["clean", "shortcut", *[f"overfit-{k}" for k in range(1, 6)]]
    rows, per_prompt = [], {}
    for index, name in enumerate(names):
        scores = shares[index - 2] if index >= 2 else [0.0, 0.0]
        rows.append({"model": name, "heldout_accuracy": 0.9, "train_accuracy": 1.0,
                     "generalization_gap": gaps[index - 2] if index >= 2 else 0.0, "misattribution": 0.1 * index,
                     "overfitting": sum(scores) / len(scores), "sparsity": 3.0, "cancellation": 0.2})
        per_prompt[name] = {"overfitting": scores, "misattribution": [0.9, 0.8] if index == 1 else [0.1, 0.6]}
    return {"models": rows, "per_prompt": per_prompt, "misattribution_auc": 0.97, "misattribution_stability": auc_share,
            "overfitting_spearman": 1.0, "overfitting_stability": 0.95, "loss_spearman": 1.0, "loss_stability": 1.0,
            "resamples": 50}


def test_the_verdict_is_todays_rule_and_the_trial_is_recomputed(dossier) -> None:
    ranked = [[0.1 * k, 0.1 * k + 0.05] for k in range(5)]
    gaps = [0.1, 0.2, 0.3, 0.4, 0.5]
    stable = dossier.summarise(_validation(0.95, ranked, gaps))
    shaky = dossier.summarise(_validation(0.64, ranked, gaps))  # a point estimate in too few resamples
    assert stable["accepted"] and not shaky["accepted"] and not shaky["misattribution_ok"]
    assert stable["per_request_spearman"] == pytest.approx(1.0) and stable["per_request_stability"] == 1.0
    reversed_family = dossier.summarise(_validation(0.95, ranked[::-1], gaps))
    assert reversed_family["per_request_spearman"] == pytest.approx(-1.0) and reversed_family["per_request_stability"] == 0.0
    assert stable["clean_files_above_half"] == 1 and stable["cue_rate"] is None


def test_the_tables_show_each_runs_figures(dossier) -> None:
    run = dossier.summarise(_validation(0.644, [[0.1 * k, 0.1 * k] for k in range(5)], [0.1, 0.2, 0.3, 0.4, 0.5]))
    text = dossier.acceptance_table({"7": run})
    assert "| 7 | 0.970 (64.4%) | 1.000 (95.0%) | 1.000 (100.0%) | 1.000 (100.0%) | n/a | not accepted: misattribution |" in text
    assert "| overfit-3 | 0.900 | +0.300 | 0.400 | 0.200 |" in dossier.models_table(run)
    assert "| 7 | 0.000 (0.100) | 0.100 (0.200) |" in dossier.family_table({"7": run})


def test_write_replaces_only_the_marked_tables(dossier, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("a\n<!-- t -->\n| old |\n<!-- /t -->\nb\n<!-- u -->\n| keep |\n<!-- /u -->\n")
    dossier.write({"t": "| new |\n"}, page)
    assert page.read_text() == "a\n<!-- t -->\n| new |\n<!-- /t -->\nb\n<!-- u -->\n| keep |\n<!-- /u -->\n"
