"""Cross-model comparison: the joint LP against the separate optima, the overlap figures, and the
comparison of real testbed models (clean vs the most overfit level; a model against itself) through the library
and the CLI.

The testbed models are built on first use by ``auditor.testbed.models.ensure_model`` (a few minutes
on a CPU, cached afterwards under $AUDITOR_TESTBED_DIR or ~/.cache/interaction-auditor/testbed).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from auditor.cli import main
from auditor.metrics.compare import ModelUnderTest, PromptItem, compare_interactions, compare_models, load_prompts
from auditor.metrics.compare_schema import ComparisonReport
from auditor.metrics.joint import joint_extraction, joint_objective
from auditor.metrics.overlap import admissible_terms, chance_overlap, overlap, salient_map, signed_iou
from auditor.engine.interactions import Interactions
from auditor.game.players import PlayerSpec
from auditor.engine.extraction import extract_interactions
from auditor.testbed.names import MOST_OVERFIT

N_PLAYERS = 6


def _planted(n: int, seed: int, shared: list[int]) -> np.ndarray:
    """A game with a few planted AND terms (some shared between games) plus small noise."""
    rng = np.random.default_rng(seed)
    index = np.arange(1 << n)
    v = np.zeros(1 << n)
    for mask in shared + [int(rng.integers(1, 1 << n)) for _ in range(4)]:
        v += rng.normal() * ((index & mask) == mask)
    v += rng.normal(scale=0.01, size=1 << n)
    return v - v[0]


@pytest.fixture(scope="module")
def planted_pair():
    shared = [0b000011, 0b010100, 0b101000]
    va, vb = _planted(N_PLAYERS, 1, shared), _planted(N_PLAYERS, 2, shared)
    return va, vb, extract_interactions(va), extract_interactions(vb)


def _check_feasible(values: np.ndarray, result, i: int) -> None:
    inter = Interactions(n=result.n, values=values, and_terms=result.and_terms[i], or_terms=result.or_terms[i],
                         q=result.q[i], tau=result.taus[i], qthres=0.04, mode="and-or", objective=0.0,
                         dual_bound=0.0, gap=0.0, iterations=0)
    assert np.allclose(inter.reconstruct(), values + result.q[i], atol=1e-9)  # universal matching
    assert np.abs(result.q[i]).max() <= result.taus[i] * (1 + 1e-7)
    assert np.all(result.or_terms[i][[1 << k for k in range(result.n)]] == 0)  # order-1 OR merged into AND


def test_joint_lp_with_alpha_one_is_the_sum_of_separate_optima(planted_pair):
    from tests.lp_oracle import dense_lp_optimum

    va, vb, ia, ib = planted_pair
    joint = joint_extraction([va, vb], qthres=0.04, alpha=1.0)
    separate = ia.objective + ib.objective
    assert joint.objective == pytest.approx(separate, rel=1e-6)
    assert joint.objective == pytest.approx(dense_lp_optimum(va, 0.04) + dense_lp_optimum(vb, 0.04), rel=1e-6)
    _check_feasible(va, joint, 0)
    _check_feasible(vb, joint, 1)


def test_joint_lp_beats_the_separate_optima_under_the_joint_objective(planted_pair):
    va, vb, ia, ib = planted_pair
    joint = joint_extraction([va, vb], qthres=0.04, alpha=0.1)
    at_separate = joint_objective([ia.and_terms, ib.and_terms], [ia.or_terms, ib.or_terms], 0.1)
    assert joint.objective <= at_separate * (1 + 1e-9)
    assert joint.objective == pytest.approx(joint.lp_objective, rel=1e-7)
    _check_feasible(va, joint, 0)
    _check_feasible(vb, joint, 1)
    # the separate optima are feasible, so each model pays at least its separate optimum in L1
    for i, sep in enumerate((ia, ib)):
        l1 = np.abs(joint.and_terms[i]).sum() + np.abs(joint.or_terms[i]).sum()
        assert l1 >= sep.objective * (1 - 1e-6)
    # the planted shared terms are salient in both joint splits
    figures = compare_interactions(ia, ib, alpha=0.1, chance_draws=0)
    shared = {(t.kind, sum(1 << p for p in t.players)) for t in figures["joint"].shared}
    assert {("and", 0b000011), ("and", 0b010100), ("and", 0b101000)} <= shared


def test_overlap_iou_and_chance_figures(planted_pair):
    _, _, ia, _ = planted_pair
    sa = salient_map(ia)
    assert sa == {(t.kind, t.mask): t.value for t in ia.salient()}
    assert overlap(sa, sa) == 1.0 and signed_iou(sa, sa) == pytest.approx(1.0)
    flipped = {t: -v for t, v in sa.items()}
    assert overlap(sa, flipped) == 0.0 and signed_iou(sa, flipped) == 0.0
    assert signed_iou(sa, {t: 3 * v for t, v in sa.items()}) == pytest.approx(1.0)  # scale-free
    assert overlap({}, sa) is None
    universe = admissible_terms(N_PLAYERS)
    assert universe == 2 ** (N_PLAYERS + 1) - N_PLAYERS - 2
    expected, p95 = chance_overlap(len(sa), sa, N_PLAYERS, draws=4000, seed=3)
    assert expected == pytest.approx(len(sa) / (2 * universe))
    assert expected <= p95 < 1.0
    # the Monte Carlo mean agrees with the exact expectation
    rng = np.random.default_rng(0)
    terms = [("and", m) for m in range(1, 1 << N_PLAYERS)] + [
        ("or", m) for m in range(1, 1 << N_PLAYERS) if m & (m - 1)]
    draws = []
    for _ in range(3000):
        picked = rng.choice(len(terms), size=len(sa), replace=False)
        random_set = {terms[k]: rng.choice((-1.0, 1.0)) for k in picked}
        draws.append(overlap(random_set, sa))
    assert np.mean(draws) == pytest.approx(expected, abs=0.01)


# ------------------------------------------------------------------------------------------------
# Real testbed models
# ------------------------------------------------------------------------------------------------
def _load(name: str) -> ModelUnderTest:
    from auditor.testbed import models

    try:
        model, tokenizer, info = models.load(name)
    except Exception as error:  # noqa: BLE001 - report why the testbed could not be built
        pytest.fail(f"the testbed could not build or load {name!r}: {error}")
    return ModelUnderTest(name=name, model=model, tokenizer=tokenizer, model_id=f"testbed:{name}",
                          path=info.get("path"))


@pytest.fixture(scope="module")
def testbed():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared CPU
    try:
        yield {"clean": _load("clean"), "overfit": _load(MOST_OVERFIT), "clean-again": _load("clean")}
    finally:
        torch.set_num_threads(before)


def _items(testbed, count: int, n: int = N_PLAYERS) -> list[PromptItem]:
    from auditor.testbed import models

    from auditor.testbed.models import read_info

    info = read_info(testbed["clean"].path)
    prompts = models.audit_prompts_for(info, count, conflict=False, max_players=n)
    return [PromptItem(prompt=p.prompt, answer=p.answer, line=i + 1,
                       spans=tuple(PlayerSpec(start=s.start, end=s.end, label=s.label, group=s.group) for s in p.spans))
            for i, p in enumerate(prompts)]


def test_overfit_model_carries_more_non_generalizable_strength(testbed):
    items = _items(testbed, 5)
    report = compare_models(testbed["clean"], testbed["overfit"], items, answer="gold", chance_draws=200)
    agg = report.aggregate
    assert agg.prompts == 5
    assert report.model_b.window_overfitting > report.model_a.window_overfitting + 0.2
    assert agg.more_non_generalizable == "b" and agg.spindle_margin > 0.2
    assert agg.prompts_b_more_spindle >= 4
    for p in report.prompts:
        assert p.n == N_PLAYERS and p.answer.strip() == items[p.index].answer.strip()
        assert p.joint is not None and p.joint.objective <= p.joint.separate_objective * (1 + 1e-9)
        assert len(p.a.order_profile_positive) == len(p.b.order_profile_positive) == N_PLAYERS
        # chance level of a random signed set: |B salient| / (2 x admissible terms), from the counts
        universe = (1 << p.n) - 1 + (1 << p.n) - p.n - 1
        assert p.chance_a_in_b == pytest.approx(p.b.salient / (2 * universe), rel=1e-9)
    ComparisonReport.model_validate_json(report.model_dump_json())


def test_a_model_compared_with_itself_overlaps_fully(testbed):
    items = _items(testbed, 2)
    report = compare_models(testbed["clean"], testbed["clean-again"], items, answer="a", chance_draws=200)
    for p in report.prompts:
        assert p.overlap_a_in_b == 1.0 and p.overlap_b_in_a == 1.0
        assert p.iou == pytest.approx(1.0)
        assert p.a.overfitting == pytest.approx(p.b.overfitting)
        assert p.chance_a_in_b < 0.2  # full overlap is far above chance
        # identical games: the joint split is shared term for term
        assert p.joint.unshared_share_a == pytest.approx(0.0, abs=1e-9)
        assert p.joint.shared and all(t.same_sign and t.value_a == pytest.approx(t.value_b, rel=1e-6, abs=1e-9)
                                      for t in p.joint.shared)
    assert report.aggregate.overlap_a_in_b == 1.0 and report.aggregate.iou == pytest.approx(1.0)
    assert report.aggregate.more_non_generalizable in ("tie", "a", "b") and abs(report.aggregate.spindle_margin) < 1e-9


def test_joint_lp_on_real_testbed_games(testbed):
    from auditor.audit import audit_prompt

    item = _items(testbed, 1)[0]
    results = [audit_prompt(testbed[name].model, testbed[name].tokenizer, prompt=item.prompt, answer=item.answer,
                            players=list(item.spans)).interactions for name in ("clean", "overfit")]
    values = [r.values for r in results]
    separate = sum(r.objective for r in results)
    joint_one = joint_extraction(values, alpha=1.0, taus=[r.tau for r in results])
    assert joint_one.objective == pytest.approx(separate, rel=1e-5)
    joint = joint_extraction(values, alpha=0.1, taus=[r.tau for r in results])
    at_separate = joint_objective([r.and_terms for r in results], [r.or_terms for r in results], 0.1)
    assert joint.objective <= at_separate * (1 + 1e-9)
    for i in range(2):
        _check_feasible(values[i], joint, i)


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------
def _write_prompts(path, items, with_answers=True):
    lines = []
    for item in items:
        obj = {"prompt": item.prompt,
               "spans": [{"start": s.start, "end": s.end, "label": s.label} for s in item.spans]}
        if with_answers:
            obj["answer"] = item.answer
        lines.append(json.dumps(obj))
    path.write_text("# testbed prompts\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cli_compare_json(testbed, tmp_path, capsys):
    prompts = _write_prompts(tmp_path / "p.jsonl", _items(testbed, 2, n=5))
    out = tmp_path / "cmp.json"
    code = main(["compare", "--model-a", "clean", "--model-b", MOST_OVERFIT, "--prompts", str(prompts),
                 "--chance-draws", "100", "--json", "--out", str(out)])
    assert code == 0
    report = ComparisonReport.model_validate_json(capsys.readouterr().out)
    assert report.settings.answer == "gold" and report.aggregate.prompts == 2
    assert report.model_a.model_id == "testbed:clean" and report.prompts[0].n == 5
    assert ComparisonReport.model_validate_json(out.read_text()) == report

    # the human-readable tables
    assert main(["compare", "--model-a", "clean", "--model-b", "clean", "--prompts", str(prompts),
                 "--max-prompts", "1", "--chance-draws", "50"]) == 0
    text = capsys.readouterr().out
    assert "random sets of equal size" in text and "order profiles" in text and "100.0%" in text


def test_cli_compare_errors(testbed, tmp_path, capsys):
    prompts = _write_prompts(tmp_path / "p.jsonl", _items(testbed, 1, n=4), with_answers=False)
    args = ["compare", "--model-a", "clean", "--model-b", "clean"]
    assert main([*args[:2], str(tmp_path / "no-model"), *args[3:], "--prompts", str(prompts)]) == 3
    assert "does not exist" in capsys.readouterr().err
    assert main([*args, "--prompts", str(tmp_path / "missing.jsonl")]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n{"prompt": \n', encoding="utf-8")
    assert main([*args, "--prompts", str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert main([*args, "--prompts", str(prompts), "--answer", "gold"]) == 2
    assert "answer" in capsys.readouterr().err
    assert main([*args, "--prompts", str(prompts), "--n", "13"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--help"])
    assert exit_info.value.code == 0
    assert "exit codes" in capsys.readouterr().out
    assert load_prompts(prompts)[0].answer is None
