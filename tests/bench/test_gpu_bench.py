"""bench/gpu.sh: the one script of GPU measurements, run in its CPU mode (tiny configurations).

No GPU is needed: ``--cpu-tiny`` runs the same three steps (the passage layout with one audit end to
end, the 128 + 16-token spread layout, the batched solver against HiGHS) at toy sizes. The summary's
token counts are checked against a count written here from the layout's definition (not from the
library's planner), so a wrong plan or a wrong copy in the summary fails.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GPU_SH = REPO / "bench" / "gpu.sh"

# The sizes gpu.sh --cpu-tiny passes (bench/gpu.sh) and the passage layout's instruction and
# question lengths (bench/long_prompt.py, DOSSIER_HEAD / DOSSIER_TAIL).
PASSAGES = dict(prompt=64, n=5, answer=4, head=12, tail=12)
SPREAD = dict(prompt=32, n=4, answer=4)


def trie_tokens(spans: list[tuple[int, int]], seq_len: int) -> int:
    """Tokens of the per-player trie, counted from its definition: the tokens before the first
    player once, then the segment from player j to player j + 1 (the last one: to the end of the
    sequence) for each of the 2^(j+1) patterns of players 0..j."""
    starts = [a for a, _ in spans]
    ends = starts[1:] + [seq_len]
    return starts[0] + sum(2 ** (j + 1) * (ends[j] - starts[j]) for j in range(len(starts)))


def finite_numbers(obj: Any, path: str = "") -> list[str]:
    """Paths of every number in ``obj`` that is not finite."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in finite_numbers(v, f"{path}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in finite_numbers(v, f"{path}[{i}]")]
    if isinstance(obj, float) and not math.isfinite(obj):
        return [path]
    return []


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("gpu-bench")
    result = subprocess.run(["bash", str(GPU_SH), "--cpu-tiny", "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    return out, result


@pytest.mark.slow
def test_cpu_tiny_mode_runs_every_step_and_writes_the_summary(run) -> None:
    out, result = run
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "cpu-tiny"
    assert "no GPU" in summary["card"]["name"] and summary["card"]["cuda_available"] is False
    assert set(summary["steps"]) == {"passages", "passages-audit", "spread", "solver"}
    assert all(s["status"] == "ok" and s["rc"] == 0 for s in summary["steps"].values()), summary["steps"]
    assert summary["seconds_total"] > 0
    for key in ("passages", "passages_audit", "spread", "solver", "targets"):
        assert summary[key], key
    assert not finite_numbers(summary), finite_numbers(summary)
    for section in ("passages", "spread"):
        s = summary[section]
        for key in ("tokens", "calls", "seconds", "trie_vs_batched_tokens_ratio", "seconds_per_audit",
                    "model_tflop_per_audit", "achieved_tflops", "max_abs_diff"):
            assert key in s, (section, key)
        assert s["max_abs_diff"] < 1e-4  # the trie's v against naive full forwards
    audit = summary["passages_audit"]
    assert audit["seconds"] > 0 and audit["n_players"] == PASSAGES["n"] and audit["gap"] <= 1e-6
    for game, row in summary["solver"]["games"].items():
        assert row["max_gap"] <= 1e-6 and row["highs_per_second"] > 0 and row["ours_batch_per_second"] > 0, game
    # targets are named but not judged at toy sizes
    assert summary["targets"] and all(t["met"] is None for t in summary["targets"])
    table = (out / "summary.txt").read_text()
    assert table.splitlines()[0].startswith("bench/gpu.sh (cpu-tiny) on cpu")
    assert table == result.stdout, "the printed table is the one written to summary.txt"


@pytest.mark.slow
def test_token_counts_match_an_independent_count(run) -> None:
    out, _ = run
    summary = json.loads((out / "summary.json").read_text())
    p = summary["passages"]
    body = PASSAGES["prompt"] - PASSAGES["head"] - PASSAGES["tail"]
    cuts = [PASSAGES["head"] + body * i // PASSAGES["n"] for i in range(PASSAGES["n"] + 1)]
    spans = list(zip(cuts, cuts[1:]))
    assert [tuple(s) for s in p["player_token_spans"]] == spans
    seq_len = PASSAGES["prompt"] + PASSAGES["answer"] - 1
    assert p["seq_len"] == seq_len
    batched = 2 ** PASSAGES["n"] * seq_len
    trie = trie_tokens(spans, seq_len)
    assert p["tokens"]["batched"] == p["tokens"]["single"] == batched
    assert p["tokens"]["trie"] == trie
    assert p["trie_vs_batched_tokens_ratio"] == pytest.approx(batched / trie, rel=1e-12)

    s = summary["spread"]
    starts = [int((i + 0.5) * SPREAD["prompt"] / SPREAD["n"]) for i in range(SPREAD["n"])]
    seq_len = SPREAD["prompt"] + SPREAD["answer"] - 1
    assert s["tokens"]["batched"] == 2 ** SPREAD["n"] * seq_len
    assert s["tokens"]["trie"] == trie_tokens([(a, a + 1) for a in starts], seq_len)
    assert s["trie_vs_batched_tokens_ratio"] == pytest.approx(2 ** SPREAD["n"] * seq_len / s["tokens"]["trie"])

    # the summary copies the step's own output
    step = json.loads((out / "passages.json").read_text())
    assert {r["strategy"]: r["tokens"] for r in step["rows"]} == p["tokens"]


def test_summary_of_a_run_whose_steps_timed_out(tmp_path: Path) -> None:
    """A step killed by its timeout leaves an empty JSON: the summary says so, still writes its
    files, and exits 1."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_summary
    finally:
        sys.path.remove(str(REPO / "bench"))
    (tmp_path / "steps.tsv").write_text("passages\t124\t200000\t200\npassages-audit\t124\t160000\t160\n"
                                        "spread\t0\t5000\t130\nsolver\t1\t900\t120\n")
    for name in ("passages", "passages-audit", "spread", "solver"):
        (tmp_path / f"{name}.json").write_text("")
    (tmp_path / "passages.log").write_text("scoring...\n")
    (tmp_path / "solver.log").write_text("Traceback\nRuntimeError: CUDA out of memory\n")
    assert gpu_summary.main([str(tmp_path), "--mode", "gpu", "--milliseconds", "205000"]) == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"]["passages"]["status"] == "timeout" and summary["steps"]["passages"]["seconds"] == 200
    assert summary["steps"]["spread"]["status"] == "failed"  # exit 0 but no JSON: not a result
    assert summary["steps"]["solver"]["status"] == "failed"
    assert "out of memory" in summary["steps"]["solver"]["log_tail"]
    assert summary["passages"] is None and summary["passages_audit"] is None and summary["targets"] == []
    assert "timeout" in (tmp_path / "summary.txt").read_text()
