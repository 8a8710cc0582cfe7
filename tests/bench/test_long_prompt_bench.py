"""bench/scoring.py's long-prompt layout without forward passes (``--plan-only``): the synthetic
case file's layout and the dossier world's longest file, counted independently of the planner."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def scoring(request: pytest.FixtureRequest):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_scoring_long", BENCH / "scoring.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scoring_long"] = module  # dataclasses need their module registered
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_scoring_long", None)
    sys.path.remove(str(BENCH))


def trie_tokens(spans: list[list[int]], seq_len: int) -> int:
    """The prefix once, then player j's segment (to the next player, the last one to the end) for
    each of the 2^(j+1) patterns of players 0..j."""
    starts = [a for a, _ in spans]
    ends = starts[1:] + [seq_len]
    return starts[0] + sum(2 ** (j + 1) * (ends[j] - starts[j]) for j in range(len(starts)))


def test_synthetic_case_file_plan(scoring, capsys) -> None:
    result = scoring.main(["--layout", "passages", "--plan-only", "--json"])
    capsys.readouterr()
    assert result["plan_only"] and result["preset"] == "dossier" and result["n_players"] == 10
    # 400 words = 400 tokens: 12 instruction tokens, 10 passages of 37 or 38, 12 question tokens
    cuts = [12 + 376 * i // 10 for i in range(11)]
    assert result["player_token_spans"] == [[a, b] for a, b in zip(cuts, cuts[1:])]
    seq_len = 400 + 16 - 1
    rows = {r["strategy"]: r for r in result["rows"]}
    assert rows["batched"]["tokens"] == 1024 * seq_len
    assert rows["trie"]["tokens"] == trie_tokens(result["player_token_spans"], seq_len)
    assert result["tokens_ratio_vs_batched"]["trie"] >= 3  # issue 19's target for this layout


def test_dossier_world_longest_file_plan(scoring, capsys) -> None:
    from auditor.testbed.dossier_corpus import audit_dossiers

    result = scoring.main(["--layout", "passages", "--case-file", "dossier", "--plan-only", "--json"])
    capsys.readouterr()
    tok = scoring.long_prompt.dossier_tokenizer()
    longest = max(len(tok(f.prompt)["input_ids"]) for f in audit_dossiers(0, 40))
    assert result["prompt_tokens"] == longest and result["answer_tokens"] == 1
    assert result["n_players"] == len(result["player_token_spans"]) >= 6
    rows = {r["strategy"]: r for r in result["rows"]}
    seq_len = result["seq_len"]
    assert rows["batched"]["tokens"] == 2 ** result["n_players"] * seq_len
    assert rows["trie"]["tokens"] == trie_tokens(result["player_token_spans"], seq_len)


def test_a_real_model_needs_a_real_prompt(scoring, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        scoring.main(["--layout", "passages", "--model", "testbed:dossier-clean"])
    assert exit_info.value.code == 2 and "--prompt-file" in capsys.readouterr().err
