"""auditor.audit and the ``audit`` CLI command, on tiny random-init models saved to disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from auditor.audit import audit_prompt
from auditor.cli import main
from tests.tiny_models import build_model, reference_values, save_tiny
from tiny_fixtures import one_thread, tok  # noqa: F401 - fixtures for this module

PROMPT = "The defendant Alice stole a bicycle from the shop in Zürich and was charged with"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


def test_audit_prompt_joins_game_and_interactions(tok):
    model = build_model("llama", tok)
    result = audit_prompt(model, tok, prompt=PROMPT, players=["Alice", "stole", "bicycle", "Zürich"], answer=" theft")
    game, inter = result.game, result.interactions
    assert inter.n == game.n == 4
    assert inter.names == ["Alice", "stole", "bicycle", "Zürich"]
    np.testing.assert_allclose(inter.values, game.values.numpy(), atol=1e-12)
    # the game is the model's: v(N) - v(empty) from the independent oracle
    spans = [(p.token_start, p.token_end) for p in game.players]
    ref = reference_values(model, game.prompt_ids, game.answer_ids, spans,
                           model.get_input_embeddings().weight[tok.pad_token_id], masks=[0, 15])
    assert abs(inter.normaliser - abs(float(ref[1] - ref[0]))) < 1e-4
    # universal matching holds on every state within tau
    assert np.abs(inter.reconstruct() - inter.values).max() <= inter.tau + 1e-9
    top = result.top(3)
    assert top and all(t.strength >= u.strength for t, u in zip(top, top[1:]))
    assert result.describe(top[0]).startswith(("AND(", "OR("))
    payload = result.to_dict(3)
    assert payload["top_interactions"][0]["words"] == [game.players[i].text for i in top[0].players]
    assert payload["baseline"] == "pad"
    json.dumps(payload)  # serialisable


def test_audit_prompt_passes_score_options(tok):
    model = build_model("gpt2", tok)
    result = audit_prompt(model, tok, prompt=PROMPT, players="random", n_players=3, seed=2, mode="and",
                          answer=" theft and", single_token=True, baseline="mean", strategy="prefix")
    assert result.game.single_token and len(result.game.answer_ids) == 1
    assert result.game.baseline_kind == "mean" and result.game.cost.strategy == "prefix"
    assert result.interactions.mode == "and" and not np.any(result.interactions.or_terms)


def test_cli_json(model_dir, capsys):
    code = main(["audit", "--model", str(model_dir), "--prompt", PROMPT, "--players", "Alice|stole|bicycle",
                 "--answer", " theft", "--json", "--top", "5"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["text"] for p in out["players"]] == ["Alice", "stole", "bicycle"]
    assert out["answer"] == " theft"
    assert 0 < len(out["top_interactions"]) <= 5
    for term in out["top_interactions"]:
        assert term["words"] == [["Alice", "stole", "bicycle"][i] for i in term["players"]]
    assert out["cost"]["tokens_computed"] > 0 and out["certificate"]["gap"] <= 1e-6


def test_cli_table_auto_players_and_chat(model_dir, capsys):
    code = main(["audit", "--model", str(model_dir), "--prompt", "Alice stole a bicycle in Rome.", "--chat",
                 "--system", "Judge theft.", "--n", "3", "--max-answer-tokens", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "top 10 interactions" in out and "players" in out
    assert "Judge" not in out.split("players")[1].splitlines()[0]  # system words are never players


def test_cli_errors(model_dir, tmp_path, capsys):
    assert main(["audit", "--model", str(tmp_path / "missing"), "--prompt", "x"]) == 3
    assert "does not exist" in capsys.readouterr().err
    assert main(["audit", "--model", str(model_dir), "--prompt", PROMPT, "--players", "Bob", "--answer", "x"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["audit", "--model", str(model_dir), "--prompt", PROMPT, "--players", "|", "--answer", "x"]) == 2
    assert main(["audit", "--model", str(model_dir), "--prompt", PROMPT, "--n", "40", "--answer", "x"]) == 2
    assert "cap" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["audit", "--model", str(empty), "--prompt", "x"]) == 3
    assert torch.get_num_threads() == 1  # the fixture is active (keeps this module fast on shared CPUs)
