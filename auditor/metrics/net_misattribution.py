"""Cancellation-aware misattribution: reliance on unreliable players, netted over sign (experimental).

The misattribution score (``audit_metrics.misattribution_score``, science.md section 3) counts the
strength |I(S)| of every salient term that contains an irrelevant or forbidden player. A large
cancelling pair, +a and -b with a close to b, on terms that touch such a player then counts as
a + b of reliance, although the two together move the output by only |a - b|: the model does not
lean on the player, its explanation merely passes through it (issue 21, item 3).

The variant nets per player region before taking the share. Write U for the unreliable players,
S for the salient terms (AND and OR alike) and |I| for their strengths. Each unreliable term's
value is split equally among the unreliable players it contains, and each player's region is
summed with signs::

    net_i = | sum over salient S containing i of I(S) / |S ∩ U| |        for i in U
    net misattribution = sum over i in U of net_i  /  sum over salient S of |I(S)|

The denominator is the current score's, so the two are shares of the same total. By the triangle
inequality 0 <= net <= current score; they are equal exactly when no unreliable region mixes
signs, and a pair +a, -a that touches one unreliable player adds nothing to the net score. The
equal split keeps a term with two unreliable players from being counted twice.

Reported next to the current score by ``testbed validate`` and never part of an audit record: the
owners adopt it only if it raises the worst world's bootstrap stability without lowering any other
(docs/testbed.md, "A cancellation-aware misattribution (trial)").
"""

from __future__ import annotations

from collections.abc import Sequence

from auditor.engine.interactions import SalientTerm
from auditor.metrics.audit_metrics import UNRELIABLE_LABELS

__all__ = ["net_misattribution_score"]


def net_misattribution_score(salient: Sequence[SalientTerm], labels: Sequence[str] | None) -> float | None:
    """Unreliable salient strength netted over sign per unreliable player, as a share of all salient strength.

    None exactly where ``misattribution_score`` is None (no player carries an unreliable label), so
    the two scores are defined on the same prompts and their AUCs compare like for like.
    """
    if labels is None or not any(label in UNRELIABLE_LABELS for label in labels):
        return None
    total = sum(term.strength for term in salient)
    if total == 0:
        return 0.0
    region: dict[int, float] = {}
    for term in salient:
        unreliable = [i for i in term.players if labels[i] in UNRELIABLE_LABELS]
        for player in unreliable:
            region[player] = region.get(player, 0.0) + term.value / len(unreliable)
    return sum(abs(value) for value in region.values()) / total
