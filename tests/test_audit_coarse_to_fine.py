"""Coarse to fine (auditor.audit): passages first, the most salient refined into words, within a
token budget; and the same through the ``audit`` CLI command.

Oracles: the refined game against one plain forward per mask (:func:`tests.tiny_models.reference_values`,
the unrefined coarse players simply present), the choice of refined players against the salient
terms recomputed from the coarse interactions, and the budget against the tokens actually computed.
"""

from __future__ import annotations

import json

import pytest

from auditor.audit import audit_prompt
from auditor.cli import main
from auditor.game.planning import OverBudgetError
from tests.tiny_models import build_model, reference_values, save_tiny
from tiny_fixtures import one_thread, tok  # noqa: F401 - fixtures for this module

PROMPT = ("The defendant Alice stole a bicycle. She was seen in Zürich!\n\n"
          "Bob paid the shop. The court heard witnesses.\n\nThe charge is")
SEGMENTS = [
    {"id": "doc-1", "text": "The defendant Alice stole a bicycle.", "label": "relevant"},
    {"id": "doc-2", "text": "She was seen in Zürich!", "label": "unlabelled"},
    {"id": "doc-3", "text": "Bob paid the shop.", "label": "irrelevant"},
    {"id": "doc-4", "text": "The court heard witnesses.", "label": "forbidden"},
]


@pytest.fixture(scope="module")
def model(tok):
    return build_model("llama", tok)


@pytest.fixture(scope="module")
def result(model, tok):
    return audit_prompt(model, tok, prompt=PROMPT, granularity="segments", segments=SEGMENTS, answer=" theft",
                        n_players=6)


def test_coarse_players_are_the_segments(result):
    assert result.granularity == "segments"
    assert [(p.segment_id, p.label) for p in result.game.players] == [(s["id"], s["label"]) for s in SEGMENTS]


def test_the_most_salient_coarse_players_are_refined(result):
    strength = [0.0] * result.game.n
    for term in result.interactions.salient():
        for i in term.players:
            strength[i] += term.strength
    expected = sorted(sorted(range(result.game.n), key=lambda i: -strength[i])[:2])
    assert list(result.refined) == expected
    fine = result.fine
    assert fine is not None and fine.granularity == "words" and 1 <= fine.game.n <= 6
    for word in fine.game.players:  # inside a refined passage, with its id and label
        owner = next(c for c in (result.game.players[i] for i in result.refined)
                     if c.char_start <= word.char_start and word.char_end <= c.char_end)
        assert (word.segment_id, word.label) == (owner.segment_id, owner.label)


def test_the_refined_game_against_one_forward_per_mask(result, model, tok):
    fine = result.fine.game
    assert fine.answer_ids == result.game.answer_ids
    assert abs(fine.raw_full - result.game.raw_full) < 1e-4  # same prompt, nothing masked
    spans = [(p.token_start, p.token_end) for p in fine.players]
    ref = reference_values(model, fine.prompt_ids, fine.answer_ids, spans,
                           model.get_input_embeddings().weight[tok.pad_token_id])
    assert (fine.values + fine.raw_empty - ref).abs().max().item() < 1e-4


def test_to_dict_has_both_levels(result):
    d = result.to_dict()
    assert d["granularity"] == "segments" and d["players"][0]["segment_id"] == "doc-1"
    assert d["refinement"]["granularity"] == "words" and d["refinement"]["refined_players"] == list(result.refined)
    json.dumps(d)


def test_budget_covers_both_games(model, tok, result):
    coarse_tokens = result.game.cost.tokens_computed
    budget = coarse_tokens + result.fine.game.cost.tokens_computed - 1
    tight = audit_prompt(model, tok, prompt=PROMPT, granularity="segments", segments=SEGMENTS, answer=" theft",
                         n_players=6, max_scored_tokens=budget)
    assert tight.fine is not None and tight.fine.game.n < result.fine.game.n
    assert tight.game.cost.tokens_computed + tight.fine.game.cost.tokens_computed <= budget
    none_left = audit_prompt(model, tok, prompt=PROMPT, granularity="segments", segments=SEGMENTS,
                             answer=" theft", max_scored_tokens=coarse_tokens)
    assert none_left.fine is None and "AUDITOR_MAX_SCORED_TOKENS" in none_left.refine_note
    with pytest.raises(OverBudgetError, match="AUDITOR_MAX_SCORED_TOKENS"):
        audit_prompt(model, tok, prompt=PROMPT, granularity="segments", segments=SEGMENTS, answer=" theft",
                     max_scored_tokens=coarse_tokens - 1)


def test_words_and_refine_zero_play_one_game(model, tok):
    short = audit_prompt(model, tok, prompt=PROMPT, granularity="words", n_players=3, answer=" theft")
    assert short.granularity == "words" and short.fine is None
    coarse_only = audit_prompt(model, tok, prompt=PROMPT, granularity="sentences", refine=0, answer=" theft")
    assert coarse_only.granularity == "sentences" and coarse_only.fine is None and coarse_only.game.n == 5


def test_phases_are_named_in_order(model, tok):
    phases: list[str] = []
    audit_prompt(model, tok, prompt=PROMPT, granularity="sentences", refine=1, answer=" theft", n_players=3,
                 on_phase=phases.append)
    assert phases == ["scoring masks", "solving", "refining", "solving"]


# ---- the CLI ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"), "llama")


def _segments_file(tmp_path, data):
    path = tmp_path / "segments.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_cli_segments_json_has_both_levels(model_dir, tmp_path, capsys):
    code = main(["audit", "--model", str(model_dir), "--prompt", PROMPT, "--players", "segments",
                 "--segments", _segments_file(tmp_path, SEGMENTS), "--answer", " theft", "--n", "4", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["granularity"] == "segments" and [p["segment_id"] for p in out["players"]] == ["doc-1", "doc-2",
                                                                                              "doc-3", "doc-4"]
    assert out["refinement"]["granularity"] == "words" and len(out["refinement"]["players"]) <= 4


def test_cli_table_shares_are_of_the_total_strength(model_dir, tmp_path, capsys):
    code = main(["audit", "--model", str(model_dir), "--prompt", PROMPT, "--players", "sentences", "--refine", "1",
                 "--answer", " theft", "--n", "3", "--top", "50"])
    assert code == 0
    out = capsys.readouterr().out
    assert "players (sentences)" in out and "refined into words" in out
    shares = [float(cell.strip().rstrip("%")) for line in out.splitlines() if line.startswith("│")
              for cell in [line.split("│")[-2]] if cell.strip().endswith("%")]
    assert shares and all(abs(s) <= 100.0 for s in shares)


@pytest.mark.parametrize(("args", "message"), [
    (["--players", "segments"], "--players segments needs --segments"),
    (["--players", "paragraph"], None),  # a one-word span not in the prompt
    (["--players", "segments", "--segments", "SEG:" + json.dumps([{"id": "doc-7", "text": "absent"}])],
     "segments['doc-7'].text: not found"),
    (["--players", "segments", "--segments", "SEG:" + json.dumps([{"id": "doc-1", "text": "Bob", "label": "odd"}])],
     "segments['doc-1'].label: unknown label"),
    (["--players", "segments", "--segments", "SEG:not json"], "--segments:"),
    (["--players", "words", "--segments", "SEG:[]"], "--segments needs --players segments or auto"),
    (["--players", "sentences", "--max-scored-tokens", "10"], "AUDITOR_MAX_SCORED_TOKENS"),
])
def test_cli_bad_input_exits_2_naming_the_field(model_dir, tmp_path, capsys, args, message):
    resolved = []
    for a in args:
        if a.startswith("SEG:"):
            path = tmp_path / "s.json"
            path.write_text(a[4:])
            a = str(path)
        resolved.append(a)
    code = main(["audit", "--model", str(model_dir), "--prompt", PROMPT, "--answer", " theft", *resolved])
    assert code == 2
    if message:
        assert message in capsys.readouterr().err.replace("\n", " ")
