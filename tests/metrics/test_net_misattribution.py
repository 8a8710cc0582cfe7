"""The cancellation-aware misattribution trial (``auditor.metrics.net_misattribution``) against
hand-computed values, and its relation to the current score."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.engine.interactions import SalientTerm, players_of
from auditor.metrics.audit_metrics import misattribution_score
from auditor.metrics.net_misattribution import net_misattribution_score


def term(kind: str, players: tuple[int, ...], value: float) -> SalientTerm:
    return SalientTerm(kind, sum(1 << i for i in players), players, value)


# players: 0 relevant, 1 irrelevant, 2 forbidden
LABELS = ["relevant", "irrelevant", "forbidden"]


def test_a_cancelling_pair_on_an_irrelevant_player_counts_for_nothing_by_hand() -> None:
    salient = [
        term("and", (0,), 4.0),      # reliable
        term("and", (1,), 3.0),      # a cancelling pair in player 1's region ...
        term("and", (0, 1), -3.0),   # ... +3 and -3
        term("and", (1, 2), 2.0),    # two unreliable players: +1 to each region
        term("or", (0, 2), -1.0),    # player 2's region: +1 - 1 = 0
    ]
    total = 4 + 3 + 3 + 2 + 1
    # the current score counts every unreliable term's strength: 3 + 3 + 2 + 1
    assert misattribution_score(salient, LABELS) == pytest.approx(9 / total)
    # netted: player 1's region 3 - 3 + 1 = 1, player 2's region 1 - 1 = 0
    assert net_misattribution_score(salient, LABELS) == pytest.approx(1 / total)


def test_one_signed_region_is_the_current_score() -> None:
    salient = [term("and", (0,), 5.0), term("and", (1,), 2.0), term("or", (0, 1), 1.0), term("and", (1, 2), -0.5)]
    # player 1: 2 + 1 + (-0.25); player 2: -0.25 -> mixed signs in player 1's region: 2.75 + 0.25 = 3 < 3.5
    assert net_misattribution_score(salient, LABELS) == pytest.approx((2.75 + 0.25) / 8.5)
    assert misattribution_score(salient, LABELS) == pytest.approx(3.5 / 8.5)
    same_sign = [term("and", (0,), 5.0), term("and", (1,), 2.0), term("or", (0, 1), 1.0), term("and", (1, 2), 0.5)]
    assert net_misattribution_score(same_sign, LABELS) == pytest.approx(misattribution_score(same_sign, LABELS))


def test_defined_exactly_where_the_current_score_is() -> None:
    salient = [term("and", (0,), 1.0)]
    assert net_misattribution_score(salient, None) is None
    assert net_misattribution_score(salient, ["relevant", "unlabelled", "relevant"]) is None
    assert net_misattribution_score([], LABELS) == 0.0
    assert net_misattribution_score(salient, LABELS) == 0.0


def test_never_above_the_current_score_on_random_terms() -> None:
    rng = np.random.default_rng(7)
    n = 6
    for _ in range(200):
        labels = list(rng.choice(["relevant", "irrelevant", "forbidden", "unlabelled"], size=n))
        masks = rng.choice(np.arange(1, 1 << n), size=12, replace=False)
        salient = [SalientTerm(str(rng.choice(["and", "or"])), int(m), players_of(int(m)), float(rng.normal()))
                   for m in masks]
        current, net = misattribution_score(salient, labels), net_misattribution_score(salient, labels)
        assert (current is None) == (net is None)
        if current is not None:
            assert -1e-12 <= net <= current + 1e-12
