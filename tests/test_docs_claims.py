"""docs/claims.py, the script behind every number of docs/claims.md: its table shows the measured
figures it is given (no number typed by hand), and ``--write`` touches only the marked table.

The measurement itself audits testbed models (minutes); it is run by hand and by the lead's
generated-docs script, not here. What is checked: the formatting of a synthetic measurement
whose every figure is distinct, and the all-terms cancellation against a hand-computed case.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.scripts import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def claims():
    return load_script("docs/claims.py", "docs_claims")


def _model(salient: float, lo: int, hi: int, mis: float, net: float, canc: float, canc_all: float) -> dict:
    return {"players": [9, 10], "salient_mean": salient, "salient_min": lo, "salient_max": hi,
            "misattribution": mis, "misattribution_net": net, "cancellation_salient": canc,
            "cancellation_all_terms": canc_all}


def test_the_table_shows_every_measured_figure(claims) -> None:
    data = {
        "single": {"prompts": 40, "models": {
            "clean": _model(10.4, 3, 21, 0.26, 0.07, 0.48, 0.51),
            "shortcut": _model(7.1, 2, 19, 0.97, 0.76, 0.31, 0.33),
            "overfit-5": _model(55.5, 12, 140, 0.44, 0.12, 0.62, 0.64),
        }},
        "overlap": [{"a": "clean seed 0", "b": "clean seed 2", "prompts": 10, "overlap_a_in_b": 0.41,
                     "overlap_b_in_a": 0.38, "chance_a_in_b": 0.004, "chance_b_in_a": 0.005, "iou": 0.29,
                     "shared_strength_a": 0.83, "shared_strength_b": 0.79, "salient_a": 9.0, "salient_b": 8.0}],
    }
    text = claims.table(data)
    lines = text.splitlines()
    assert lines[0].startswith("| claim | source |") and len(lines) == 2 + 3 + 1
    for figure in ("10.4", "3-21", "7.1", "55.5", "2^11 = 2048", "n = 10", "97%", "26%", "76%", "7%",
                   "48%", "31%", "62%", "51%", "33%", "64%", "41%", "38%", "0.4%", "0.5%", "0.29", "83%", "79%"):
        assert figure in text, figure
    assert "clean seed 0 vs clean seed 2" in lines[-1] and "--compare-prompts 10" in lines[-1]


def test_write_replaces_only_the_marked_table(claims, tmp_path: Path) -> None:
    page = tmp_path / "claims.md"
    page.write_text(f"before\n{claims.BEGIN}| old |\n{claims.END}after\n")
    claims.write("| new |\n", page)
    assert page.read_text() == f"before\n{claims.BEGIN}| new |\n{claims.END}after\n"
    assert claims.BEGIN in (REPO / "docs" / "claims.md").read_text()


def test_all_term_cancellation_by_hand(claims) -> None:
    class Terms:  # positive 3 + 1, negative 2: 2 min(4, 2) / 6
        and_terms = np.array([9.0, 3.0, -2.0, 0.0])  # index 0 (the empty set) is never a term
        or_terms = np.array([0.0, 0.0, 0.0, 1.0])

    assert claims._all_term_cancellation(Terms) == pytest.approx(4 / 6)


def test_the_table_in_claims_md_is_the_rendering_of_the_kept_measurement(claims) -> None:
    """docs/claims.md's table is what ``claims.py --from-json docs/claims-measured.json`` prints."""
    import json

    data = json.loads((REPO / "docs" / "claims-measured.json").read_text())
    doc = (REPO / "docs" / "claims.md").read_text()
    shown = doc[doc.index(claims.BEGIN) + len(claims.BEGIN):doc.index(claims.END)]
    assert shown == claims.table(data)
