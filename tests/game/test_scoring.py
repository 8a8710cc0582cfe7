"""auditor.game.scoring: the fast masked-scoring engine against one-mask-at-a-time full forward passes.

Oracle: :func:`tests.tiny_models.reference_values` (a plain forward per mask, full logits, log-odds
computed as log p - log(1 - p) in float64). Models: random-init Llama, Qwen2 and GPT-2 configs.
"""

from __future__ import annotations

import json
import math
import sys
import warnings

import pytest
import torch

from auditor.game.answer import generate_greedy
from auditor.game.planning import LevelPlan, choose_chunk_size, plan_levels
from auditor.game.scoring import score_masks
from auditor.game.value import resolve_baseline, stable_log_odds
from auditor.game.players import PlayerError, content_words, render_prompt
from tests.tiny_models import ARCHITECTURES, build_model, build_tokenizer, reference_values
from tiny_fixtures import one_thread, tok  # noqa: F401 - fixtures for this module

PROMPT = "The defendant Alice stole a bicycle from the shop in Zürich and was charged with"
SPANS = ["defendant", "Alice", "bicycle", "shop", "Zürich"]


@pytest.fixture(scope="module")
def models(tok):
    return {arch: build_model(arch, tok) for arch in ARCHITECTURES}


def _spans(game):
    return [(p.token_start, p.token_end) for p in game.players]


def _pad_embedding(model, tokenizer):
    return model.get_input_embeddings().weight[tokenizer.pad_token_id]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fast_paths_equal_one_mask_at_a_time(models, tok, arch):
    model = models[arch]
    games = {
        strategy: score_masks(
            model, tok, prompt=PROMPT, players=SPANS, max_answer_tokens=5, strategy=strategy, chunk_size=4
        )
        for strategy in ("auto", "trie", "prefix", "batched", "single")
    }
    first = games["auto"]
    ref = reference_values(model, first.prompt_ids, first.answer_ids, _spans(first), _pad_embedding(model, tok))
    assert abs(first.raw_empty - float(ref[0])) < 1e-4
    for strategy, game in games.items():
        assert game.answer_ids == first.answer_ids and len(game.answer_ids) == 5
        assert game.values.dtype == torch.float64 and game.values.shape == (32,)
        assert game.values[0] == 0.0
        err = (game.values + game.raw_empty - ref).abs().max().item()
        assert err < 1e-4, (strategy, err)
    # the engine really shares work: the trie computes fewer tokens than plain batching
    assert games["trie"].cost.tokens_computed < games["prefix"].cost.tokens_computed
    assert games["prefix"].cost.tokens_computed < games["batched"].cost.tokens_computed
    # and the game is not degenerate (masking changes the answer's log-odds)
    assert ref.std() > 1e-2


def test_players_at_the_start_and_chat(models, tok):
    """No shared prefix (player at token 0), and a chat-rendered prompt with a system message."""
    model = models["llama"]
    game = score_masks(model, tok, prompt=PROMPT, players=["The", "stole", "charged"], max_answer_tokens=3, chunk_size=2)
    assert game.players[0].token_start == 0
    ref = reference_values(model, game.prompt_ids, game.answer_ids, _spans(game), _pad_embedding(model, tok))
    assert (game.values + game.raw_empty - ref).abs().max() < 1e-4

    messages = [{"role": "system", "content": "Judge theft."}, {"role": "user", "content": "Alice stole a bicycle in Rome."}]
    game = score_masks(model, tok, messages=messages, players="auto", n_players=3, answer=" theft", strategy="trie")
    assert game.prompt_text.startswith("<s><|system|>") and game.prompt_text.endswith("<|assistant|>")
    user_lo = game.prompt_text.index("Alice")
    assert all(p.char_start >= user_lo for p in game.players)
    ref = reference_values(model, game.prompt_ids, game.answer_ids, _spans(game), _pad_embedding(model, tok))
    assert (game.values + game.raw_empty - ref).abs().max() < 1e-4


def test_single_token_mode(models, tok):
    model = models["qwen2"]
    game = score_masks(model, tok, prompt=PROMPT, players=SPANS[:3], answer=" theft", single_token=True)
    assert len(game.answer_ids) == 1 and game.single_token
    ref = reference_values(model, game.prompt_ids, game.answer_ids, _spans(game), _pad_embedding(model, tok))
    assert (game.values + game.raw_empty - ref).abs().max() < 1e-4


@pytest.mark.parametrize(
    ("baseline", "tok_kwargs", "kind"),
    [
        (None, {}, "pad"),
        ("unk", {}, "unk"),
        ("mean", {}, "mean"),
        (None, {"with_pad": False}, "unk"),
        (None, {"with_pad": False, "with_unk": False}, "mean"),
        ("tensor", {}, "tensor"),
    ],
)
def test_masked_positions_carry_the_baseline(baseline, tok_kwargs, kind):
    """A pre-hook on the decoder sees every embedding fed to it: masked player tokens must hold the
    baseline, every other token its own embedding (positions and length unchanged)."""
    tokenizer = build_tokenizer(**tok_kwargs)
    model = build_model("llama", tokenizer)
    weight = model.get_input_embeddings().weight
    expected = {
        "pad": lambda: weight[tokenizer.convert_tokens_to_ids("<pad>")],
        "unk": lambda: weight[tokenizer.convert_tokens_to_ids("<unk>")],
        "mean": lambda: weight.mean(0),
        "tensor": lambda: torch.linspace(-1, 1, weight.shape[1]),
    }[kind]().detach()
    if baseline == "tensor":
        baseline = expected.clone()
    seen: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        seen.append(kwargs["inputs_embeds"].detach().clone())

    handle = model.get_decoder().register_forward_pre_hook(hook, with_kwargs=True)
    try:
        game = score_masks(
            model, tokenizer, prompt=PROMPT, players=SPANS[:4], answer=" theft", baseline=baseline,
            strategy="batched", chunk_size=16,
        )
    finally:
        handle.remove()
    assert game.baseline_kind == kind
    batch = seen[-1]
    seq = list(game.prompt_ids) + list(game.answer_ids[:-1])
    assert batch.shape == (16, len(seq), weight.shape[1])
    tokens = weight[torch.tensor(seq)].detach()
    owner = {t: i for i, p in enumerate(game.players) for t in range(p.token_start, p.token_end)}
    for row in range(16):
        for t in range(len(seq)):
            i = owner.get(t)
            masked = i is not None and not (row >> i) & 1
            target = expected if masked else tokens[t]
            assert torch.allclose(batch[row, t], target, atol=1e-6), (row, t, masked)


def test_baseline_errors(tok, models):
    model = models["llama"]
    no_pad = build_tokenizer(with_pad=False)
    with pytest.raises(ValueError, match="no pad token"):
        resolve_baseline(model, no_pad, "pad")
    with pytest.raises(ValueError, match="shape"):
        resolve_baseline(model, tok, torch.zeros(3))
    with pytest.raises(ValueError, match="unknown baseline"):
        resolve_baseline(model, tok, "zeros")


def test_stable_log_odds_against_direct_formula():
    torch.manual_seed(0)
    logits = torch.randn(4, 7, 50) * 3
    targets = torch.randint(0, 50, (4, 7))
    ours = stable_log_odds(logits, targets)
    logp = torch.log_softmax(logits.double(), -1).gather(-1, targets[..., None]).squeeze(-1)
    direct = logp - torch.log(-torch.expm1(logp))
    assert ours.dtype == torch.float32
    assert torch.allclose(ours.double(), direct, atol=1e-4)
    # saturation: p_y = 1 - 9e-14; log(p/(1-p)) in fp32 is inf, the stable form is exact
    z = torch.zeros(1, 10)
    z[0, 3] = 30.0
    naive = torch.log(torch.softmax(z, -1)[0, 3] / (1 - torch.softmax(z, -1)[0, 3]))
    assert not torch.isfinite(naive)
    assert abs(stable_log_odds(z, torch.tensor([3])).item() - (30 - math.log(9))) < 1e-5


def test_unmasked_value_equals_direct_log_odds_from_full_logits(models, tok):
    model = models["gpt2"]
    game = score_masks(model, tok, prompt=PROMPT, players=SPANS[:2], max_answer_tokens=6)
    seq = torch.tensor([list(game.prompt_ids) + list(game.answer_ids[:-1])])
    with torch.no_grad():
        logits = model(input_ids=seq).logits[0].float()
    positions = torch.arange(len(game.prompt_ids) - 1, seq.shape[1])
    direct = stable_log_odds(logits[positions], torch.tensor(game.answer_ids)).sum().item()
    assert abs(game.raw_full - direct) < 1e-4


def test_answer_forms(models, tok):
    model = models["llama"]
    greedy = score_masks(model, tok, prompt=PROMPT, players=SPANS[:2], max_answer_tokens=4)
    # independent greedy oracle: argmax of full forwards, no cache
    ids = list(greedy.prompt_ids)
    expected = []
    eos = tok.eos_token_id
    with torch.no_grad():
        for _ in range(4):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == eos:
                break
            expected.append(nxt)
            ids.append(nxt)
    assert list(greedy.answer_ids) == expected[:4] or (not expected and greedy.answer_ids == (eos,))
    as_ids = score_masks(model, tok, prompt=PROMPT, players=SPANS[:2], answer=list(greedy.answer_ids))
    assert torch.equal(as_ids.values, greedy.values)
    text = score_masks(model, tok, prompt=PROMPT, players=SPANS[:2], answer=" theft and fraud", max_answer_tokens=2)
    assert list(text.answer_ids) == tok(" theft and fraud", add_special_tokens=False)["input_ids"][:2]
    with pytest.raises(ValueError, match="empty"):
        score_masks(model, tok, prompt=PROMPT, players=SPANS[:2], answer="")
    assert generate_greedy(model, tok, greedy.prompt_ids, 4) == list(greedy.answer_ids)


def test_auto_players_are_the_largest_single_word_effects(models, tok):
    model = models["qwen2"]
    game = score_masks(model, tok, prompt=PROMPT, players="auto", n_players=3, answer=" theft and fraud")
    rendered = render_prompt(tok, prompt=PROMPT)
    words = content_words(rendered)
    assert len(words) > 3
    spans = [(w.token_start, w.token_end) for w in words]
    full = 2 ** len(words) - 1
    masks = [full] + [full & ~(1 << i) for i in range(len(words))]
    ref = reference_values(model, game.prompt_ids, game.answer_ids, spans, _pad_embedding(model, tok), masks)
    effects = (ref[0] - ref[1:]).abs()
    top = sorted(torch.argsort(effects, descending=True)[:3].tolist())
    assert [p.text for p in game.players] == [words[i].text for i in top]
    assert [p.index for p in game.players] == [0, 1, 2]
    assert game.cost.selection_tokens > 0
    rnd = score_masks(model, tok, prompt=PROMPT, players="random", n_players=3, seed=1, answer=" theft")
    assert rnd.cost.selection_tokens == 0 and len(rnd.players) == 3


def test_determinism_and_chunk_size_invariance(models, tok):
    model = models["llama"]
    kwargs = dict(prompt=PROMPT, players=SPANS, answer=" theft and fraud", strategy="auto")
    a = score_masks(model, tok, chunk_size=8, **kwargs)
    b = score_masks(model, tok, chunk_size=8, **kwargs)
    assert torch.equal(a.values, b.values) and a.raw_empty == b.raw_empty
    for chunk in (1, 2, 32, 1000):
        c = score_masks(model, tok, chunk_size=chunk, **kwargs)
        assert c.cost.chunk_size == min(32, 2 ** int(math.log2(chunk)))
        assert (c.values - a.values).abs().max() <= 1e-5, chunk


def test_tokens_computed_match_the_plan_and_progress(models, tok):
    model = models["llama"]
    calls: list[tuple[int, int]] = []
    game = score_masks(
        model, tok, prompt=PROMPT, players=SPANS, answer=" theft", strategy="trie", chunk_size=4,
        progress=lambda done, total: calls.append((done, total)),
    )
    seq_len = len(game.prompt_ids) + len(game.answer_ids) - 1
    plan = plan_levels(sorted(p.token_start for p in game.players), seq_len, 4, "trie")
    assert game.cost.tokens_computed == plan.tokens
    assert game.cost.forward_passes == plan.calls == len(calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (plan.tokens, plan.tokens)


def test_plan_levels_token_counts():
    """science.md section 4: 10 players spread over 128 prompt + 16 answer tokens: ~147k tokens
    plainly batched, ~31k with the trie; the trie's saving vanishes when players sit at the end."""
    seq_len = 128 + 16 - 1
    starts = [6 + 12 * i for i in range(10)]
    batched = plan_levels(starts, seq_len, 1024, "batched")
    prefix = plan_levels(starts, seq_len, 1024, "prefix")
    trie = plan_levels(starts, seq_len, 1024, "trie")
    auto = plan_levels(starts, seq_len, 1024, "auto", call_overhead=8)
    assert batched.tokens == 1024 * seq_len
    assert prefix.tokens == 6 + 1024 * (seq_len - 6)
    assert trie.tokens == 6 + sum(2 ** (j + 1) * 12 for j in range(9)) + 1024 * (seq_len - starts[-1])
    assert batched.tokens / trie.tokens > 3.4
    assert auto.tokens + 8 * auto.calls <= trie.tokens + 8 * trie.calls
    at_end = [118 + i for i in range(10)]
    end_trie = plan_levels(at_end, seq_len, 1024, "trie")
    end_prefix = plan_levels(at_end, seq_len, 1024, "prefix")
    assert end_prefix.tokens - end_trie.tokens < 0.1 * batched.tokens  # little left to share
    gpu = plan_levels(at_end, seq_len, 1024, "auto", call_overhead=256)
    assert len(gpu.groups) < 10  # not worth ten calls
    assert isinstance(gpu, LevelPlan)
    with pytest.raises(ValueError):
        plan_levels([3, 3], seq_len, 8)


def test_chunk_size_from_memory_budget(models):
    model = models["llama"]
    small = choose_chunk_size(model, 40, 4, 400, 1024, memory_budget=1)
    big = choose_chunk_size(model, 40, 4, 400, 1024, memory_budget=10**12)
    mid = choose_chunk_size(model, 40, 4, 400, 1024, memory_budget=50 * 2**20)
    assert small == 1 and big == 1024 and 1 <= mid <= 1024
    assert mid & (mid - 1) == 0


def test_exotic_head_falls_back_to_the_models_own_logits(tok):
    """If our fp32 head disagrees with the model's logits, the model's own head must be used."""
    model = build_model("llama", tok)
    model.config.final_logit_softcapping = 0.5  # Llama ignores it; our head would apply it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        game = score_masks(model, tok, prompt=PROMPT, players=SPANS[:3], answer=" theft and")
    assert game.extras["head"] == "model"
    assert any("output head" in str(w.message) for w in caught)
    ref = reference_values(model, game.prompt_ids, game.answer_ids, _spans(game), _pad_embedding(model, tok))
    assert (game.values + game.raw_empty - ref).abs().max() < 1e-4


def test_bf16_model_runs_with_fp32_log_odds(tok):
    model = build_model("qwen2", tok, dtype=torch.bfloat16)
    a = score_masks(model, tok, prompt=PROMPT, players=SPANS[:4], answer=" theft and fraud", chunk_size=4)
    b = score_masks(model, tok, prompt=PROMPT, players=SPANS[:4], answer=" theft and fraud", chunk_size=4)
    assert a.extras["head"] == "fp32"
    assert a.values.dtype == torch.float64 and torch.isfinite(a.values).all()
    assert torch.equal(a.values, b.values)
    fp32 = build_model("qwen2", tok, dtype=torch.float32)
    ref = score_masks(fp32, tok, prompt=PROMPT, players=SPANS[:4], answer=" theft and fraud")
    # bf16 rounding of the decoder only; same game up to a few percent of its range
    scale = ref.values.abs().max().item()
    assert (a.values - ref.values).abs().max().item() < 0.1 * scale + 0.05


def test_errors(models, tok):
    model = models["llama"]
    with pytest.raises(PlayerError, match="cap"):
        score_masks(model, tok, prompt=PROMPT, n_players=17)
    with pytest.raises(PlayerError, match="empty prompt"):
        score_masks(model, tok, prompt="")
    with pytest.raises(ValueError, match="strategy"):
        score_masks(model, tok, prompt=PROMPT, players=SPANS[:2], answer="x", strategy="fast")
    with pytest.raises(PlayerError, match="not found"):
        score_masks(model, tok, prompt=PROMPT, players=["Bob"], answer="x")


def test_bench_script_smoke(capsys, monkeypatch):
    """bench/scoring.py runs end to end (tiny preset, all strategies in full) and its numbers agree."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "scoring.py"
    spec = importlib.util.spec_from_file_location("bench_scoring", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_scoring", module)  # dataclasses need their module registered
    spec.loader.exec_module(module)
    result = module.main(["--preset", "tiny", "--n", "4", "--prompt-tokens", "24", "--answer-tokens", "3",
                          "--full", "--json", "--chunk-size", "4"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["rows"] == result["rows"]
    rows = {r["strategy"]: r for r in result["rows"]}
    assert set(rows) == {"single", "batched", "prefix", "trie", "auto"}
    assert not any(r["extrapolated"] for r in rows.values())
    assert rows["batched"]["tokens"] == 16 * 26 and rows["single"]["calls"] == 16
    assert rows["trie"]["tokens"] < rows["prefix"]["tokens"] < rows["batched"]["tokens"]
    assert all(r["max_abs_diff"] < 1e-4 for r in rows.values())
    assert result["tokens_ratio_vs_batched"]["trie"] > 1.5
