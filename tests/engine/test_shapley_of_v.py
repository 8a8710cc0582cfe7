"""Interactions.shapley() is the exact Shapley value of v; shapley_of_fit() that of v + q; to_shapiq.

Oracles: shapiq's ExactComputer on the caller's game, and efficiency (the values sum to
v(N) - v(empty)), which the fit's values miss by up to qthres |v(N) - v(empty)|.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from auditor.engine.exact import interaction_index
from auditor.engine.extraction import extract_interactions
from auditor.engine.interactions import Interactions
from shapiq_fixtures import as_vector, games, shapiq_index


def test_the_one_player_game_gets_its_whole_worth() -> None:
    """The issue's minimal case: v = [2, 5] was reported 2.88 (the fit shrinks by tau = 0.04 x 3)."""
    result = extract_interactions(np.array([2.0, 5.0]))
    assert result.shapley().tolist() == [3.0]
    assert result.shapley_of_fit() == pytest.approx([3.0 - result.tau])
    assert result.shapley_of_fit().sum() == pytest.approx(result.values[-1] + result.q[-1], abs=1e-12)


@pytest.mark.parametrize("qthres", [0.0, 0.01, 0.04, 0.2, 0.5])
@pytest.mark.parametrize("mode", ["and-or", "and"])
def test_shapley_is_efficient_and_exact_at_every_qthres(qthres: float, mode: str) -> None:
    n = 7
    values = games(n)["soum-high"] * 40.0 + 11.0
    result = extract_interactions(values, qthres=qthres, mode=mode)
    phi = result.shapley()
    assert abs(phi.sum() - (values[-1] - values[0])) <= 1e-12 * np.abs(values).max()
    expected, _ = as_vector(shapiq_index(values, "SV", 1), n)
    np.testing.assert_allclose(phi, expected[[1 << i for i in range(n)]], rtol=0, atol=1e-12 * np.abs(values).max())
    # the fit's own values are efficient for v + q instead, which is what they are named for
    assert result.shapley_of_fit().sum() == pytest.approx(result.values[-1] + result.q[-1], abs=1e-9)
    assert abs(result.shapley_of_fit().sum() - phi.sum()) <= result.tau * (1 + 1e-7) + 1e-9


def test_shapley_survives_a_json_round_trip() -> None:
    result = extract_interactions(games(5)["random"])
    again = Interactions.from_json(result.to_json())
    np.testing.assert_array_equal(again.shapley(), result.shapley())
    np.testing.assert_array_equal(again.shapley_of_fit(), result.shapley_of_fit())


@pytest.mark.parametrize(
    ("index", "order"),
    [("Moebius", None), ("Co-Moebius", None), ("SV", None), ("BV", None), ("SII", 2), ("BII", 3), ("STII", 2),
     ("FSII", 2), ("moebius", 3)],
)
def test_to_shapiq_round_trips_and_equals_shapiq(index: str, order: int | None) -> None:
    n = 6
    values = games(n)["soum-low"] + 2.5  # v(empty) = 2.5: shapiq's baseline
    result = extract_interactions(values)
    converted = result.to_shapiq(index, order)
    back, present = as_vector(converted, n)
    ours = interaction_index(values, index, order=order)
    np.testing.assert_array_equal(back[present], ours[present])  # exactly our values, nothing lost
    assert not ours[~present].any()
    reference = shapiq_index(values, converted.index, converted.max_order)
    oracle, oracle_present = as_vector(reference, n)
    assert oracle_present[present].all()  # (shapiq's Moebius ignores the order: it has more sets)
    tol = 1e-6 if index == "FSII" else 1e-12  # shapiq's FSII is a penalised least squares (test_exact.py)
    np.testing.assert_allclose(back[present], oracle[present], rtol=0, atol=tol * np.abs(values).max())
    assert converted.baseline_value == reference.baseline_value == values[0]
    assert converted.estimated is False and converted.n_players == n


def test_to_shapiq_names_the_extra_when_shapiq_is_missing(monkeypatch) -> None:
    result = extract_interactions(np.array([0.0, 1.0, 1.0, 3.0]))
    monkeypatch.setitem(sys.modules, "shapiq", None)  # import shapiq now raises ImportError
    with pytest.raises(ImportError, match=r"pip install interaction-auditor\[shapiq\]"):
        result.to_shapiq()
