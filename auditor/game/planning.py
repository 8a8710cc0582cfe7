"""How the mask tree is walked and how many rows go in one forward call.

The tokens between player j and j+1 depend only on the bits of players 0..j, so a level needs
2^(players so far) versions of its segment, not 2^n. :func:`plan_levels` groups players into levels
with a small cost model (tokens computed plus a per-call overhead), so the trie is used where it pays;
:func:`choose_chunk_size` fixes the rows per call from a memory budget (fixed shapes => v is
bit-identical run to run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

STRATEGIES: tuple[str, ...] = ("auto", "trie", "prefix", "batched", "single")

# Per-forward-call overhead in token equivalents, for the level planner. On a GPU a forward call
# reads every weight once however few tokens it carries (the roofline ridge of an H100 in bf16 is
# ~300 tokens); on a CPU the per-call cost is small against the per-token cost.
CALL_OVERHEAD_TOKENS = {"cuda": 256, "cpu": 8}
DEFAULT_CPU_BUDGET = 2 * 1024**3


class OverBudgetError(ValueError):
    """The game cannot be played within a limit: the model's context, the scored-token budget or
    the memory budget. The message names the limit (and its setting); an accepted audit is
    recorded with outcome ``over_budget``, never truncated silently."""


@dataclass(frozen=True)
class LevelPlan:
    """How the mask tree is walked.

    ``prefix_len`` tokens are encoded once (batch 1). Level i covers tokens ``bounds[i]`` and the
    players at position ranks ``groups[i]``; its rows are all bit patterns of the players of levels
    0..i, so it computes ``2^(players so far)`` copies of its segment.
    """

    strategy: str
    prefix_len: int
    groups: tuple[tuple[int, ...], ...]
    bounds: tuple[tuple[int, int], ...]
    tokens: int
    calls: int


def plan_levels(
    starts: Sequence[int],
    seq_len: int,
    chunk_size: int,
    strategy: str = "auto",
    call_overhead: int = CALL_OVERHEAD_TOKENS["cpu"],
) -> LevelPlan:
    """Choose levels for players starting at sorted token positions ``starts`` in a sequence of
    ``seq_len`` tokens (prompt plus teacher-forced answer), with at most ``chunk_size`` rows per call.

    "batched": one level from token 0 (no shared prefix); "single": the same with one row per call;
    "prefix": shared prefix then one level; "trie": one level per player; "auto": the grouping that
    minimises tokens + calls * call_overhead (dynamic programming over split points, O(n^2)).
    """
    n = len(starts)
    if n == 0 or list(starts) != sorted(starts) or len(set(starts)) != n:
        raise ValueError("starts must be distinct, sorted, and non-empty")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
    ends = list(starts[1:]) + [seq_len]

    def level_cost(i: int, j: int) -> tuple[int, int]:
        rows = 2 ** (j + 1)
        return rows * (ends[j] - starts[i]), -(-rows // chunk_size)

    if strategy in ("batched", "single"):
        calls = 2**n if strategy == "single" else -(-(2**n) // chunk_size)
        return LevelPlan(strategy, 0, (tuple(range(n)),), ((0, seq_len),), 2**n * seq_len, calls)
    prefix = starts[0]
    if strategy == "prefix":
        cuts = [0, n]
    elif strategy == "trie":
        cuts = list(range(n + 1))
    else:
        best: list[tuple[float, int]] = [(0.0, -1)] + [(math.inf, -1)] * n
        for j in range(n):
            for i in range(j + 1):
                tokens, calls = level_cost(i, j)
                cost = best[i][0] + tokens + calls * call_overhead
                if cost < best[j + 1][0]:
                    best[j + 1] = (cost, i)
        cuts = [n]
        while cuts[-1] > 0:
            cuts.append(best[cuts[-1]][1])
        cuts.reverse()
    groups = tuple(tuple(range(a, b)) for a, b in zip(cuts, cuts[1:]))
    bounds = tuple((starts[g[0]], ends[g[-1]]) for g in groups)
    tokens, calls = prefix, 1 if prefix else 0
    for g in groups:
        t, c = level_cost(g[0], g[-1])
        tokens, calls = tokens + t, calls + c
    return LevelPlan(strategy, prefix, groups, bounds, tokens, calls)


def estimate_row_bytes(model: Any, seq_len: int, n_answer: int, vocab: int) -> int:
    """Peak memory one row of a forward call needs, roughly: up to three KV caches of the full
    sequence (a parent level's, the child's, and the transient copy while it grows), the decoder's
    activations for the longest segment, and fp32 logits at the answer positions."""
    cfg = model.config.get_text_config()
    layers = int(cfg.num_hidden_layers)
    hidden = int(cfg.hidden_size)
    heads = int(cfg.num_attention_heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
    inter = int(getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden)
    item = model.get_input_embeddings().weight.element_size()
    kv = 3 * 2 * layers * kv_heads * head_dim * item * seq_len
    act = seq_len * (8 * hidden + 3 * inter) * item + 4 * heads * seq_len * seq_len
    logits = 2 * 4 * n_answer * vocab
    return kv + act + logits


def choose_chunk_size(
    model: Any, seq_len: int, n_answer: int, vocab: int, n_states: int, memory_budget: int | None,
    *, strict: bool = False,
) -> int:
    """Largest power of two rows per call that fits the budget (at least 1, at most 2^n).

    Rows are sized by tokens: one row's estimate grows with the sequence (KV caches linearly,
    attention scores quadratically), so a 4k-token prompt gets few rows per call and peak memory
    stays under the budget. ``strict`` (a budget the operator set): a single row over the budget
    raises :class:`OverBudgetError` instead of running anyway."""
    device = model.get_input_embeddings().weight.device
    if memory_budget is None:
        if device.type == "cuda":
            # Half of what the weights leave of the card, not of the *free* memory: free memory
            # varies run to run, and the chunk size must not (fixed shapes => bit-identical v).
            total = torch.cuda.get_device_properties(device).total_memory
            weights = sum(p.numel() * p.element_size() for p in model.parameters())
            memory_budget = max(1, int(0.5 * (total - weights)))
        else:
            memory_budget = DEFAULT_CPU_BUDGET
    row_bytes = estimate_row_bytes(model, seq_len, n_answer, vocab)
    if strict and row_bytes > memory_budget:
        raise OverBudgetError(
            f"one masked row of {seq_len} tokens needs about {row_bytes / 2**20:.0f} MiB, over the memory "
            f"budget of {memory_budget / 2**20:.0f} MiB (memory_budget_mb, AUDITOR_MEMORY_BUDGET_MB)"
        )
    rows = max(1, memory_budget // max(1, row_bytes))
    return int(min(n_states, 2 ** int(math.log2(rows))))


def pow2_floor(x: int) -> int:
    if x < 1:
        raise ValueError(f"chunk_size must be >= 1, got {x}")
    return 2 ** int(math.log2(x))
