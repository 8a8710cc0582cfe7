"""The share of interaction strength not shared with the reference model (``auditor.testbed.reference_share``).

Oracles: games small enough that the sparsest split is known by hand (additive games with q = 0,
whose only terms are the players' own order-1 terms), the joint LP's terms read directly, and a
replay that counts its calls (the reference is audited again only where the answers differ).
"""

from __future__ import annotations

import numpy as np
import pytest

from auditor.engine.extraction import extract_interactions
from auditor.metrics.joint import joint_extraction
from auditor.metrics.overlap import salient_terms
from auditor.testbed.reference_share import PlayedGame, unshared_share, unshared_with_reference


def additive(weights: list[float]):
    """The game v(T) = sum of the weights of the players in T, split exactly (qthres 0)."""
    n = len(weights)
    values = np.array([sum(w for i, w in enumerate(weights) if mask >> i & 1) for mask in range(1 << n)])
    return extract_interactions(values, qthres=0.0)


def test_unshared_share_by_hand() -> None:
    # A rests on player 0 (2) and player 1 (1); the reference on player 0 alone (3).
    a, reference, other = additive([2.0, 1.0]), additive([3.0, 0.0]), additive([0.0, 3.0])
    assert unshared_share(a, reference) == pytest.approx(1 / 3, abs=1e-6)  # AND(1) = 1 of 3 is not shared
    assert unshared_share(reference, a) == pytest.approx(0.0, abs=1e-6)  # the reference's one term is A's too
    assert unshared_share(a, a) == pytest.approx(0.0, abs=1e-6)
    assert unshared_share(reference, other) == pytest.approx(1.0, abs=1e-6)  # disjoint explanations


def test_unshared_share_is_compares_figure_on_a_planted_pair() -> None:
    # The direct formula on the joint split: strength of A's salient joint terms not salient in B's.
    rng = np.random.default_rng(3)
    n = 5
    index = np.arange(1 << n)
    games = []
    for _ in range(2):
        v = np.zeros(1 << n)
        for mask in [0b00011, 0b01100, int(rng.integers(1, 1 << n)), int(rng.integers(1, 1 << n))]:
            v += rng.normal() * ((index & mask) == mask)
        games.append(v)
    a, b = extract_interactions(games[0]), extract_interactions(games[1])
    joint = joint_extraction([a.values, b.values], qthres=a.qthres, taus=[a.tau, b.tau])
    ja = salient_terms(joint.and_terms[0], joint.or_terms[0], 0.05)
    jb = salient_terms(joint.and_terms[1], joint.or_terms[1], 0.05)
    expected = sum(abs(v) for t, v in ja.items() if t not in jb) / sum(abs(v) for v in ja.values())
    assert 0.0 < expected < 1.0
    assert unshared_share(a, b) == pytest.approx(expected, abs=1e-9)


def test_the_reference_is_replayed_only_on_answers_it_did_not_give() -> None:
    clean = [additive([3.0, 0.0]), additive([1.0, 1.0])]
    mine, cue = additive([2.0, 1.0]), additive([0.0, 3.0])
    clean_on_cue = additive([0.0, 1.0])
    games = {
        "clean": [PlayedGame(clean[0], (7,), "pad"), PlayedGame(clean[1], (7,), "pad")],
        "overfit": [PlayedGame(mine, (7,), "pad"), PlayedGame(clean[1], (7,), "pad")],
        "shortcut": [PlayedGame(mine, (7,), "pad"), PlayedGame(cue, (9,), "pad")],
        "shortcut-2": [PlayedGame(cue, (9,), "pad"), PlayedGame(cue, (9,), "pad")],
    }
    calls = []

    def replay(index: int, answer_ids, kind: str):
        calls.append((index, tuple(answer_ids), kind))
        return clean_on_cue

    shares = unshared_with_reference(games, "clean", replay)
    assert set(shares) == {"overfit", "shortcut", "shortcut-2"}
    # same answer: the clean model's own game is the reference game
    assert shares["overfit"] == pytest.approx([1 / 3, 0.0], abs=1e-6)
    # another answer (9): the clean model is replayed on it, once per prompt and answer
    assert shares["shortcut"] == pytest.approx([1 / 3, 0.0], abs=1e-6)  # cue's AND(1) = 3 is shared with AND(1) = 1
    assert shares["shortcut-2"] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert sorted(calls) == [(0, (9,), "pad"), (1, (9,), "pad")]


def test_a_model_on_fewer_prompts_than_the_reference_is_refused() -> None:
    game = PlayedGame(additive([1.0, 0.0]), (1,), "pad")
    with pytest.raises(ValueError, match="1 prompts, the reference on 2"):
        unshared_with_reference({"clean": [game, game], "other": [game]}, "clean", lambda *args: game.interactions)


def test_validate_prints_the_reference_column_and_the_trial_row() -> None:
    from rich.console import Console

    from auditor.cli.validation_tables import validation_tables as _validation_tables
    from auditor.testbed import acceptance

    def model(name: str, unshared: list[float | None], net: list[float]) -> acceptance.ModelReport:
        return acceptance.ModelReport(name=name, heldout_accuracy=0.9, train_accuracy=1.0, generalization_gap=0.1,
                                      misattribution=[0.5, 0.5], misattribution_net=net, sparsity=[3, 4],
                                      cancellation=[0.1, 0.2], unshared_with_reference=unshared)

    clean = model("clean", [], [0.0, 0.1])
    shortcut = model("shortcut", [0.25, 0.5], [0.4, 0.6])
    report = acceptance.ValidationReport(models=[clean, shortcut], misattribution_auc=1.0, overfitting_spearman=1.0,
                                         resamples=10, misattribution_stability=1.0,
                                         misattribution_net_auc=0.875, misattribution_net_stability=0.9,
                                         reference_prompts=2)
    console = Console(record=True, width=400)
    for table in _validation_tables(report):
        console.print(table)
    lines = console.export_text().splitlines()
    assert "not shared with clean (first 2)" in next(line for line in lines if "held-out acc" in line)
    assert "(reference)" in next(line for line in lines if line.startswith("│ clean"))
    shortcut_line = next(line for line in lines if line.startswith("│ shortcut"))
    assert "38%" in shortcut_line and "0.500" in shortcut_line  # mean unshared 0.375, mean net 0.5
    trial = next(line for line in lines if "cancellation-aware" in line)
    assert "0.875" in trial and "90%" in trial and "pass" not in trial
    row = report.to_dict()["models"]
    assert row[0]["unshared_with_reference"] is None and row[1]["unshared_with_reference"] == pytest.approx(0.375)


def test_the_cli_default_is_the_librarys() -> None:
    from auditor.cli import testbed_command
    from auditor.testbed import acceptance

    assert testbed_command.DEFAULT_REFERENCE_PROMPTS == acceptance.DEFAULT_REFERENCE_PROMPTS


def test_a_negative_reference_prompt_count_is_bad_input(capsys) -> None:
    from auditor.cli import main

    assert main(["testbed", "validate", "--reference-prompts", "-1"]) == 2
    assert "--reference-prompts must be >= 0, got -1" in capsys.readouterr().err
