"""The fragility figure (``auditor.metrics.fragility``): the statistic by hand, the perturbation's scale and
determinism, and its behaviour on a real (tiny) LM game."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from auditor.metrics.fragility import game_fragility, perturbed_copy, window_fragility
from auditor.game.scoring import score_masks
from tests.tiny_models import build_model, build_tokenizer

PROMPT = "The clerk stole the wallet of the baker on Monday. The charge is"


def test_fragility_by_hand():
    v = np.array([0.0, 1.0, 0.0, 1.0])  # centred: +-0.5, norm 1
    moved = v + np.array([0.3, 0.4, 0.3, 0.2])  # dv - mean(dv) = (0, 0.1, 0, -0.1)
    assert game_fragility(v, moved) == pytest.approx(math.sqrt(0.02))


def test_fragility_ignores_a_shift_and_the_scale():
    rng = np.random.default_rng(0)
    v, dv = rng.normal(size=16), rng.normal(size=16) * 0.1
    assert game_fragility(v, v + 3.0) == pytest.approx(0.0, abs=1e-12)
    assert game_fragility(v, v) == 0.0
    assert game_fragility(5 * v, 5 * (v + dv)) == pytest.approx(game_fragility(v, v + dv))
    assert game_fragility(torch.tensor(v), torch.tensor(v + dv)) == pytest.approx(game_fragility(v, v + dv))


def test_fragility_of_a_constant_game_is_undefined_and_shapes_must_match():
    assert game_fragility(np.ones(8), np.arange(8.0)) is None
    with pytest.raises(ValueError, match="different shapes"):
        game_fragility(np.zeros(4), np.zeros(8))


def test_window_fragility_is_the_median_of_defined_prompts():
    assert window_fragility([0.3, None, 0.1, 0.2, float("nan")]) == pytest.approx(0.2)
    assert window_fragility([None, None]) is None
    assert window_fragility([]) is None


@pytest.fixture(scope="module")
def tiny():
    tokenizer = build_tokenizer()
    return build_model("llama", tokenizer), tokenizer


def test_perturbed_copy_leaves_the_model_alone_and_is_seeded(tiny):
    model, _ = tiny
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    first, again, other = perturbed_copy(model, 0.05, seed=0), perturbed_copy(model, 0.05, seed=0), perturbed_copy(model, 0.05, seed=1)
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]), name
    pairs = list(zip(first.parameters(), again.parameters(), other.parameters()))
    assert all(torch.equal(a, b) for a, b, _ in pairs)
    assert any(not torch.equal(a, c) for a, _, c in pairs)
    assert all(torch.equal(a, b) for a, b in zip(perturbed_copy(model, 0.0).parameters(), model.parameters()))
    with pytest.raises(ValueError, match="relative_sigma"):
        perturbed_copy(model, -0.1)


def test_perturbation_is_relative_to_each_tensor_spread(tiny):
    model, _ = tiny
    noisy = perturbed_copy(model, 0.05)
    for (name, original), changed in zip(model.named_parameters(), noisy.parameters()):
        if original.numel() < 1000:
            continue  # too few entries for a sharp estimate of the spread
        ratio = float((changed - original).detach().std() / original.detach().std())
        assert ratio == pytest.approx(0.05, rel=0.1), name


def test_fragility_of_a_real_game_grows_with_the_noise(tiny):
    model, tokenizer = tiny
    game = score_masks(model, tokenizer, prompt=PROMPT, players=["clerk", "stole", "wallet", "baker", "Monday"],
                       max_answer_tokens=1)
    figures = []
    for sigma in (0.0, 0.02, 0.1, 0.3):
        moved = score_masks(perturbed_copy(model, sigma), tokenizer, prompt=PROMPT,
                            players=["clerk", "stole", "wallet", "baker", "Monday"],
                            answer=list(game.answer_ids), max_answer_tokens=1)
        figures.append(game_fragility(game.values, moved.values))
    assert figures[0] == pytest.approx(0.0, abs=1e-9)
    assert figures[1] < figures[2] < figures[3]
