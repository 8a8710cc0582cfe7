"""auditor.game.granularity: sentences, messages, passages and caller segments as players.

Oracles: a coarse player's span is checked against the tokenizer's own offsets (every token of the
sentence, none outside), and a game on coarse players against :func:`tests.tiny_models.reference_values`
(one plain forward per mask, every token of a masked player set to the baseline).
"""

from __future__ import annotations

import pytest

from auditor.game.granularity import (
    AUTO_COARSE_MIN_TOKENS,
    GRANULARITIES,
    SegmentSpec,
    coarse_players,
    resolve_auto,
    segment_players,
)
from auditor.game.planning import OverBudgetError
from auditor.game.players import PlayerError, content_words, is_content_word, render_prompt
from auditor.game.scoring import score_masks
from tests.tiny_models import build_model, reference_values
from tiny_fixtures import one_thread, tok  # noqa: F401 - fixtures for this module

TEXT = ("The defendant Alice stole a bicycle. She was seen in Zürich! Was it theft?\n\n"
        "Bob paid the shop. The court heard witnesses.\n\nThe charge is")
SENTENCES = ["The defendant Alice stole a bicycle.", "She was seen in Zürich!", "Was it theft?",
             "Bob paid the shop.", "The court heard witnesses.", "The charge is"]
CHAT = [{"role": "system", "content": "You are a judge. Be fair."}, {"role": "user", "content": "Alice stole a bicycle."},
        {"role": "assistant", "content": "Noted."}, {"role": "user", "content": "What is the charge?"}]


@pytest.fixture(scope="module")
def model(tok):
    return build_model("llama", tok, max_positions=4096)


def _covers_exactly(rendered, player):
    """The player's tokens are exactly those whose offsets overlap its characters."""
    hits = [i for i, (a, b) in enumerate(rendered.offsets) if b > a and a < player.char_end and b > player.char_start]
    assert (player.token_start, player.token_end) == (hits[0], hits[-1] + 1)
    assert rendered.text[player.char_start:player.char_end] == player.text


def test_sentences_and_paragraphs(tok):
    r = render_prompt(tok, prompt=TEXT)
    sentences = coarse_players(r, "sentences")
    assert [p.text for p in sentences] == SENTENCES
    assert [p.segment_id for p in sentences] == [f"s{i}" for i in range(6)]
    paragraphs = coarse_players(r, "paragraphs")
    assert [p.text for p in paragraphs] == [" ".join(SENTENCES[:3]), " ".join(SENTENCES[3:5]), SENTENCES[5]]
    for p in sentences + paragraphs:
        _covers_exactly(r, p)
    # a plain prompt has no turns: "messages" plays its paragraphs
    assert [p.text for p in coarse_players(r, "messages")] == [p.text for p in paragraphs]


def test_more_units_than_the_limit_are_merged_into_contiguous_groups(tok):
    r = render_prompt(tok, prompt=TEXT)
    groups = coarse_players(r, "sentences", max_players=4)
    assert len(groups) == 4
    # every sentence lies in exactly one group, in order, none cut
    joined = [TEXT[p.char_start:p.char_end] for p in groups]
    assert sum(sum(s in g for g in joined) for s in SENTENCES) == len(SENTENCES)
    assert all(a.token_end <= b.token_start for a, b in zip(groups, groups[1:]))


def test_messages_with_the_system_prompt_whole_or_in_sentences(tok):
    r = render_prompt(tok, messages=CHAT)
    whole = coarse_players(r, "messages", messages=CHAT)
    assert [(p.segment_id, p.text) for p in whole] == [
        ("m0:system", "You are a judge. Be fair."), ("m1:user", "Alice stole a bicycle."),
        ("m2:assistant", "Noted."), ("m3:user", "What is the charge?")]
    split = coarse_players(r, "messages", messages=CHAT, system="sentences")
    assert [p.text for p in split[:2]] == ["You are a judge.", "Be fair."]
    for p in whole + split:
        _covers_exactly(r, p)


def test_segments_by_text_and_by_range_keep_id_and_label(tok):
    r = render_prompt(tok, prompt=TEXT)
    start = TEXT.index("Bob paid")
    players = segment_players(r, [
        {"id": "doc-2", "start": start, "end": start + len("Bob paid the shop."), "label": "irrelevant"},
        SegmentSpec(id="doc-1", text=SENTENCES[0], label="relevant"),
    ])
    assert [(p.index, p.segment_id, p.label, p.text) for p in players] == [
        (0, "doc-2", "irrelevant", "Bob paid the shop."), (1, "doc-1", "relevant", SENTENCES[0])]
    for p in players:
        _covers_exactly(r, p)
    # a passage in the system prompt of a chat is found too (RAG context often sits there)
    rc = render_prompt(tok, messages=CHAT)
    (sys_seg,) = segment_players(rc, [{"id": "ctx", "text": "Be fair."}], messages=CHAT)
    assert rc.text[sys_seg.char_start:sys_seg.char_end] == "Be fair."


@pytest.mark.parametrize(("segments", "message"), [
    ([{"id": "doc-9", "text": "not in the prompt"}], "segments['doc-9'].text: not found"),
    ([{"id": "a", "text": "Alice stole"}, {"id": "b", "text": "stole a bicycle"}], "segments['a'] and segments['b'] overlap"),
    ([{"id": "doc-1", "text": "Alice", "label": "spurious"}], "segments['doc-1'].label: unknown label"),
    ([{"id": "doc-1", "text": "   "}], "segments['doc-1'].text: the passage is empty"),
    ([{"id": f"d{i}", "text": "Alice"} for i in range(13)], "13 segments exceed the limit of 12"),
    ([{"id": "x", "text": "Alice"}, {"id": "x", "text": "Bob"}], "duplicate id 'x'"),
    ([{"id": "bad id!", "text": "Alice"}], "bad id"),
    ([{"id": "doc-1", "start": 5, "end": 5000}], "segments['doc-1']: range 5:5000 runs past"),
    ([{"id": "doc-1", "text": "Alice", "colour": "red"}], "unknown field(s) ['colour']"),
    ([], "needs at least one segment"),
])
def test_bad_segments_name_the_segment(tok, segments, message):
    r = render_prompt(tok, prompt=TEXT)
    with pytest.raises(PlayerError) as info:
        segment_players(r, segments)
    assert message in str(info.value)


def test_auto_is_words_when_short_and_passages_when_long(tok):
    short = render_prompt(tok, prompt=TEXT)
    assert len(short) < AUTO_COARSE_MIN_TOKENS and resolve_auto(short, None, 0) == "words"
    long_text = "\n\n".join([TEXT] * 6)
    long = render_prompt(tok, prompt=long_text)
    assert len(long) >= AUTO_COARSE_MIN_TOKENS and resolve_auto(long, None, 0) == "paragraphs"
    assert resolve_auto(short, [{"id": "a", "text": "Alice"}], 0) == "segments"
    assert set(GRANULARITIES) == {"words", "sentences", "messages", "segments", "auto"}


def test_negations_are_content_words_and_function_words_are_not(tok):
    assert is_content_word("not") and is_content_word("never") and is_content_word("didn't")
    assert not is_content_word("the") and not is_content_word("was")
    r = render_prompt(tok, prompt="Alice did not steal the bicycle")
    assert [w.text for w in content_words(r)] == ["Alice", "not", "steal", "bicycle"]


def test_unknown_granularity_is_a_player_error_naming_the_field(model, tok):
    with pytest.raises(PlayerError, match="granularity: unknown player mode 'paragraph'"):
        score_masks(model, tok, prompt=TEXT, players="paragraph", answer=" theft")


def test_a_masked_coarse_player_is_all_its_tokens_at_the_baseline(model, tok):
    """The game on sentence players equals one plain forward per mask (the oracle)."""
    game = score_masks(model, tok, prompt=TEXT, players="sentences", answer=" theft of", chunk_size=8)
    assert game.extras["granularity"] == "sentences" and game.n == 6
    spans = [(p.token_start, p.token_end) for p in game.players]
    assert all(b - a > 3 for a, b in spans)  # really multi-token players
    baseline = model.get_input_embeddings().weight[tok.pad_token_id]
    ref = reference_values(model, game.prompt_ids, game.answer_ids, spans, baseline)
    assert (game.values + game.raw_empty - ref).abs().max().item() < 1e-4


def _long_prompt(n_passages: int, words_per: int) -> str:
    vocab = "court witness bicycle shop Alice Bob theft charge judge Zürich defendant stole paid".split()
    return "\n\n".join(
        " ".join(vocab[(i * 7 + j) % len(vocab)] for j in range(words_per)) + "." for i in range(n_passages)
    ) + "\n\nThe charge is"


def test_long_passages_are_single_trie_levels_and_share_work(model, tok):
    """~2,000 tokens, 5 passages: the trie computes each passage's tokens 2^(players before it)
    times, so it needs far fewer tokens than plain batching, with the same values."""
    text = _long_prompt(5, 150)
    trie = score_masks(model, tok, prompt=text, players="messages", answer=" theft", chunk_size=8, strategy="trie")
    batched = score_masks(model, tok, prompt=text, players="messages", answer=" theft", chunk_size=8,
                          strategy="batched")
    assert len(trie.prompt_ids) > 1500 and trie.n == 6
    assert (trie.values - batched.values).abs().max().item() < 1e-4
    assert batched.cost.tokens_computed >= 3 * trie.cost.tokens_computed


def test_budgets_are_errors_naming_the_setting(model, tok):
    with pytest.raises(OverBudgetError, match="AUDITOR_MAX_SCORED_TOKENS"):
        score_masks(model, tok, prompt=TEXT, players="sentences", answer=" theft", max_tokens=100)
    with pytest.raises(OverBudgetError, match="AUDITOR_MEMORY_BUDGET_MB"):
        score_masks(model, tok, prompt=TEXT, players="sentences", answer=" theft", memory_budget=1000,
                    strict_memory=True)
    small = build_model("llama", tok, max_positions=64)
    with pytest.raises(OverBudgetError, match="exceeds the model's context of 64 tokens"):
        score_masks(small, tok, prompt=_long_prompt(3, 30), players="sentences", answer=" theft")


def test_word_budget_drops_the_least_effective_words_first(model, tok):
    full = score_masks(model, tok, prompt=TEXT, players="words", n_players=6, answer=" theft")
    budget = full.cost.tokens_computed - 1
    fewer = score_masks(model, tok, prompt=TEXT, players="words", n_players=6, answer=" theft", max_tokens=budget)
    assert fewer.n < full.n and fewer.cost.tokens_computed <= budget
    assert {p.text for p in fewer.players} < {p.text for p in full.players}


def test_bench_passages_layout_smoke(capsys, monkeypatch):
    """bench/scoring.py --layout passages runs end to end; the trie's values match naive forwards
    and it computes fewer tokens than plain batching (the plan's counts are the engine's)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "scoring.py"
    spec = importlib.util.spec_from_file_location("bench_scoring_passages", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_scoring_passages", module)
    spec.loader.exec_module(module)
    result = module.main(["--preset", "tiny", "--layout", "passages", "--n", "4", "--prompt-tokens", "130",
                          "--answer-tokens", "3", "--full", "--json", "--chunk-size", "4", "--no-audit"])
    capsys.readouterr()
    rows = {r["strategy"]: r for r in result["rows"]}
    assert result["layout"] == "passages" and rows["trie"]["tokens"] < rows["batched"]["tokens"]
    assert all(r["max_abs_diff"] is not None and r["max_abs_diff"] < 1e-3 for r in rows.values())


def test_rows_per_call_are_sized_by_tokens_to_stay_under_the_budget(model):
    """The same memory budget gives fewer rows per call to a longer sequence, and rows x the
    per-row estimate stays under it (the estimate grows with the tokens, not the rows)."""
    from auditor.game.planning import choose_chunk_size, estimate_row_bytes

    budget = 2**30
    vocab = model.config.vocab_size
    short = choose_chunk_size(model, 256, 4, vocab, 4096, budget, strict=True)
    long = choose_chunk_size(model, 4000, 4, vocab, 4096, budget, strict=True)
    assert long < short
    for seq, rows in ((256, short), (4000, long)):
        assert rows * estimate_row_bytes(model, seq, 4, vocab) <= budget


def test_a_4k_token_prompt_scores_exactly_under_a_memory_budget(model, tok):
    text = _long_prompt(3, 440)
    game = score_masks(model, tok, prompt=text, players="messages", answer=" theft", memory_budget=2**30,
                       strict_memory=True)
    assert len(game.prompt_ids) > 3500 and game.n == 4 and game.cost.chunk_size < 16
    spans = [(p.token_start, p.token_end) for p in game.players]
    masks = [0, 5, 10, 15]
    ref = reference_values(model, game.prompt_ids, game.answer_ids, spans,
                           model.get_input_embeddings().weight[tok.pad_token_id], masks)
    assert max(abs(float(game.values[m]) + game.raw_empty - float(r)) for m, r in zip(masks, ref)) < 1e-4
