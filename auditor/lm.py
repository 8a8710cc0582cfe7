"""The causal-LM game: v(T) for all 2^n masked prompts, computed exactly and fast.

science.md section 1 defines the game: players outside T have their input embeddings replaced by a
baseline embedding (positions, length and attention unchanged), the answer y_1..y_K is teacher-forced
after the masked prompt, and v(T) = sum_k [z_{y_k} - logsumexp_{j != y_k} z_j] in fp32, minus v(empty).

Why the engine looks the way it does (this is where an audit's GPU time goes):

* **Only the needed logits.** The decoder runs without its LM head; the head is applied to the K
  answer positions only, in fp32 (a bf16 head would round logits to ~3 digits, and the AND/OR
  transforms amplify such noise thousands of times).
* **Shared prefix.** Tokens before the first player are identical in every mask: encoded once, its
  KV cache is broadcast over the batch.
* **Trie over players.** With players in position order, the tokens between player j and j+1 depend
  only on the bits of players 0..j, so they need 2^(j+1) versions, not 2^n. The engine walks the mask
  tree level by level, extending KV caches, depth first once a level exceeds one chunk. Levels may
  group several players; :func:`plan_levels` picks the grouping with a small cost model (tokens
  computed plus a per-call overhead), so the trie is used where it pays.
* **Fixed chunk shapes.** Every forward call of a level has the same batch size (a power of two), so
  the same audit always runs the same kernels: v is bit-identical run to run, and low-precision
  GEMMs that are not batch-invariant cannot make different masks see different rounding regimes.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from auditor.players import (
    DEFAULT_MAX_PLAYERS,
    Player,
    PlayerError,
    PlayerSpec,
    RenderedPrompt,
    check_count,
    content_words,
    players_from_specs,
    random_players,
    render_prompt,
    words_to_players,
)

Strategy = Literal["auto", "trie", "prefix", "batched", "single"]
STRATEGIES: tuple[str, ...] = ("auto", "trie", "prefix", "batched", "single")
ProgressFn = Callable[[int, int], None]

# Per-forward-call overhead in token equivalents, for the level planner. On a GPU a forward call
# reads every weight once however few tokens it carries (the roofline ridge of an H100 in bf16 is
# ~300 tokens); on a CPU the per-call cost is small against the per-token cost.
CALL_OVERHEAD_TOKENS = {"cuda": 256, "cpu": 8}
DEFAULT_CPU_BUDGET = 2 * 1024**3


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreCost:
    """What one game cost. ``forward_passes`` counts the game's model forward *calls* (each a batch
    of rows); ``tokens_computed`` counts token positions pushed through the decoder, summed over
    rows, including the auto-selection pass (``selection_tokens``)."""

    forward_passes: int
    tokens_computed: int
    seconds: float
    device: str
    strategy: str = "auto"
    chunk_size: int = 0
    selection_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GameValues:
    """v over all 2^n masked states (binary order, v(empty) subtracted) and how it was obtained."""

    values: torch.Tensor
    raw_empty: float
    players: tuple[Player, ...]
    baseline_kind: str
    answer_ids: tuple[int, ...]
    answer_text: str
    cost: ScoreCost
    prompt_text: str = ""
    prompt_ids: tuple[int, ...] = ()
    single_token: bool = False
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.players)

    @property
    def raw_full(self) -> float:
        """v(N) before subtracting v(empty): the model's log-odds for its answer, unmasked."""
        return float(self.values[-1]) + self.raw_empty

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": self.values.tolist(),
            "raw_empty": self.raw_empty,
            "players": [p.to_dict() for p in self.players],
            "baseline_kind": self.baseline_kind,
            "answer_ids": list(self.answer_ids),
            "answer_text": self.answer_text,
            "cost": self.cost.to_dict(),
            "single_token": self.single_token,
        }


# ----------------------------------------------------------------------------------------------
# Log-odds, output head, baseline
# ----------------------------------------------------------------------------------------------


def stable_log_odds(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j, in fp32, without saturation.

    ``logits``: [..., V]; ``targets``: [...] token ids. Never computes p, so a confident answer
    (p = 1 - 1e-9) keeps its full log-odds instead of rounding to infinity.
    """
    return _log_odds_(logits.float().clone(), targets)


def _log_odds_(z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """In-place variant on an fp32 tensor the caller owns (saves a copy of K x V logits per row)."""
    index = targets.unsqueeze(-1)
    zy = z.gather(-1, index).squeeze(-1)
    z.scatter_(-1, index, float("-inf"))
    return zy - torch.logsumexp(z, dim=-1)


class OutputHead:
    """The model's LM head applied in fp32 to selected hidden states.

    Handles plain linear heads plus the known post-head transforms (Cohere's ``logit_scale``,
    Granite's ``logits_scaling``, Gemma-2's ``final_logit_softcapping``). :func:`score_masks` checks
    it against the model's own logits once per audit and falls back to the model's forward (its
    logits cast to fp32) if they disagree, so an exotic head cannot silently corrupt v.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        head = model.get_output_embeddings()
        if not isinstance(head, torch.nn.Linear):
            raise TypeError(f"unsupported output head {type(head).__name__}")
        self.weight = head.weight
        self.bias = head.bias
        cfg = model.config.get_text_config()
        scale = getattr(model, "logit_scale", None)
        self.scale = float(scale) if isinstance(scale, (int, float)) else None
        self.divisor = getattr(cfg, "logits_scaling", None)
        self.softcap = getattr(cfg, "final_logit_softcapping", None)
        self._w32: torch.Tensor | None = None

    @property
    def vocab_size(self) -> int:
        return int(self.weight.shape[0])

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        shape = hidden.shape[:-1]
        h = hidden.reshape(-1, hidden.shape[-1])
        logits = None
        if h.is_cuda and h.dtype in (torch.bfloat16, torch.float16) and self.weight.dtype == h.dtype:
            try:  # exact products, fp32 accumulation and fp32 output, at tensor-core speed
                logits = torch.mm(h, self.weight.t(), out_dtype=torch.float32)
            except (TypeError, RuntimeError):
                logits = None
        if logits is None:
            logits = F.linear(h.float(), self._weight32())
        if self.bias is not None:
            logits = logits + self.bias.float()
        if self.scale is not None:
            logits = logits * self.scale
        if self.divisor:
            logits = logits / float(self.divisor)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits.reshape(*shape, -1)

    def _weight32(self) -> torch.Tensor:
        if self.weight.dtype == torch.float32:
            return self.weight
        if self._w32 is None:
            self._w32 = self.weight.float()
        return self._w32


def resolve_baseline(
    model: torch.nn.Module, tokenizer: Any, baseline: str | torch.Tensor | None = None
) -> tuple[torch.Tensor, str]:
    """The embedding that replaces masked tokens, and its recorded kind.

    Default (None): the pad token's embedding if the tokenizer has a pad token, else unk's, else the
    mean input embedding. "pad"/"unk" demand that token; a tensor of shape [hidden] is used as given.
    """
    emb = model.get_input_embeddings()
    device, dtype = emb.weight.device, emb.weight.dtype
    if isinstance(baseline, torch.Tensor):
        if baseline.shape != (emb.weight.shape[1],):
            raise ValueError(f"baseline tensor must have shape ({emb.weight.shape[1]},), got {tuple(baseline.shape)}")
        return baseline.to(device=device, dtype=dtype), "tensor"
    if baseline is None:
        if getattr(tokenizer, "pad_token_id", None) is not None:
            baseline = "pad"
        elif getattr(tokenizer, "unk_token_id", None) is not None:
            baseline = "unk"
        else:
            baseline = "mean"
    if baseline in ("pad", "unk"):
        token_id = getattr(tokenizer, f"{baseline}_token_id", None)
        if token_id is None:
            raise ValueError(f"baseline {baseline!r} requested but the tokenizer has no {baseline} token")
        if not 0 <= token_id < emb.weight.shape[0]:
            raise ValueError(f"{baseline} token id {token_id} is outside the model's embedding matrix")
        with torch.inference_mode():
            return emb(torch.tensor([token_id], device=device))[0].clone(), baseline
    if baseline == "mean":
        with torch.inference_mode():
            total = torch.zeros(emb.weight.shape[1], dtype=torch.float32, device=device)
            vocab = emb.weight.shape[0]
            for lo in range(0, vocab, 8192):  # through the module, so any embedding scale applies
                ids = torch.arange(lo, min(lo + 8192, vocab), device=device)
                total += emb(ids).float().sum(0)
            return (total / vocab).to(dtype), "mean"
    raise ValueError(f"unknown baseline {baseline!r}; use 'pad', 'unk', 'mean' or a tensor")


# ----------------------------------------------------------------------------------------------
# Answer
# ----------------------------------------------------------------------------------------------


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, (list, tuple)):
        ids.update(int(e) for e in eos)
    return ids


def generate_greedy(model: Any, tokenizer: Any, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
    """Greedy answer tokens, stopping before EOS.

    The EOS token is kept only when it is the whole answer (there must be something to score).
    Written as a plain loop, not ``generate``, so no generation-config default (sampling, penalties)
    can change which answer is audited.
    """
    device = model.get_input_embeddings().weight.device
    eos = _eos_ids(model, tokenizer)
    keep = {"logits_to_keep": 1} if _accepts(model.forward, "logits_to_keep") else {}
    cache = DynamicCache(config=model.config)
    out_ids: list[int] = []
    step = torch.tensor([list(prompt_ids)], device=device)
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            logits = model(input_ids=step, past_key_values=cache, use_cache=True, **keep).logits
            token = int(logits[0, -1].float().argmax())
            if token in eos:
                if not out_ids:
                    out_ids.append(token)
                break
            out_ids.append(token)
            step = torch.tensor([[token]], device=device)
    return out_ids


def _answer_ids(
    model: Any, tokenizer: Any, prompt_ids: Sequence[int], answer: str | Sequence[int] | None, k: int
) -> list[int]:
    if answer is None:
        ids = generate_greedy(model, tokenizer, prompt_ids, k)
    elif isinstance(answer, str):
        ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    else:
        ids = [int(i) for i in answer]
    if not ids:
        raise ValueError("the answer is empty: nothing to score")
    vocab = model.get_input_embeddings().weight.shape[0]
    if any(not 0 <= i < vocab for i in ids):
        raise ValueError("answer token ids fall outside the model's vocabulary")
    return ids[:k]


# ----------------------------------------------------------------------------------------------
# Level planning (the trie where it pays)
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Chunk size from a memory budget
# ----------------------------------------------------------------------------------------------


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
    model: Any, seq_len: int, n_answer: int, vocab: int, n_states: int, memory_budget: int | None
) -> int:
    """Largest power of two rows per call that fits the budget (at least 1, at most 2^n)."""
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
    rows = max(1, memory_budget // max(1, estimate_row_bytes(model, seq_len, n_answer, vocab)))
    return int(min(n_states, 2 ** int(math.log2(rows))))


def _pow2_floor(x: int) -> int:
    if x < 1:
        raise ValueError(f"chunk_size must be >= 1, got {x}")
    return 2 ** int(math.log2(x))


# ----------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------


def _cache_is_gatherable(model: Any) -> bool:
    """Row-gathering a KV cache is only defined for plain attention layers (not recurrent states)."""
    cache = DynamicCache(config=model.config)
    if not cache.layers:
        return getattr(cache, "layer_class_to_replicate", None) is DynamicLayer
    return all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers)


def _gather_rows(cache: DynamicCache, index: torch.Tensor) -> DynamicCache:
    """A new cache whose row r is row ``index[r]`` of ``cache`` (the parent stays untouched)."""
    new = copy.copy(cache)
    new.layers = []
    for layer in cache.layers:
        copied = copy.copy(layer)
        if layer.is_initialized and layer.keys is not None and layer.keys.numel():
            copied.keys = layer.keys.index_select(0, index)
            copied.values = layer.values.index_select(0, index)
        new.layers.append(copied)
    return new


class _Engine:
    """Scores masked versions of one teacher-forced sequence.

    ``units`` are token spans (start, end) of the units being switched; a row's ``present`` is a
    bool vector over units. Everything runs under ``torch.inference_mode``.
    """

    def __init__(
        self,
        model: Any,
        embeds: torch.Tensor,
        baseline: torch.Tensor,
        units: Sequence[tuple[int, int]],
        answer_ids: torch.Tensor,
        head: OutputHead | None,
        chunk_size: int,
        progress: ProgressFn | None = None,
    ) -> None:
        self.model = model
        self.decoder = model.get_decoder()
        self.embeds = embeds
        self.baseline = baseline
        self.units = list(units)
        self.answer_ids = answer_ids
        self.head = head
        self.chunk = chunk_size
        self.progress = progress
        self.seq_len = embeds.shape[0]
        self.k = answer_ids.shape[0]
        unit_of_token = torch.full((self.seq_len,), -1, dtype=torch.long, device=embeds.device)
        for u, (a, b) in enumerate(self.units):
            unit_of_token[a:b] = u
        self.unit_of_token = unit_of_token
        self.calls = 0
        self.tokens = 0
        self.total_tokens = 0

    # -- one forward --------------------------------------------------------------------------
    def _segment(self, present: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Input embeddings of tokens [start, end) for each row, masked units set to the baseline."""
        seg = self.embeds[start:end]
        owner = self.unit_of_token[start:end]
        keep = torch.ones(present.shape[0], end - start, dtype=torch.bool, device=seg.device)
        inside = owner >= 0
        keep[:, inside] = present[:, owner[inside]]
        return torch.where(keep.unsqueeze(-1), seg, self.baseline)

    def _count(self, rows: int, length: int) -> None:
        self.calls += 1
        self.tokens += rows * length
        if self.progress is not None:
            self.progress(self.tokens, self.total_tokens)

    def _extend(self, cache: DynamicCache, present: torch.Tensor, start: int, end: int) -> None:
        self.decoder(inputs_embeds=self._segment(present, start, end), past_key_values=cache, use_cache=True)
        self._count(present.shape[0], end - start)

    def _score(self, cache: DynamicCache | None, present: torch.Tensor, start: int) -> torch.Tensor:
        """Finish rows from ``start`` to the end and return their v (fp32, one per row)."""
        emb = self._segment(present, start, self.seq_len)
        rows = present.shape[0]
        if self.head is None:  # the model's own head (exotic heads): its logits cast to fp32
            keep = {"logits_to_keep": self.k} if _accepts(self.model.forward, "logits_to_keep") else {}
            logits = self.model(
                inputs_embeds=emb, past_key_values=cache, use_cache=cache is not None, **keep
            ).logits[:, -self.k:].float()
        else:
            hidden = self.decoder(
                inputs_embeds=emb, past_key_values=cache, use_cache=cache is not None
            ).last_hidden_state
            logits = self.head(hidden[:, -self.k:])
        self._count(rows, self.seq_len - start)
        return _log_odds_(logits, self.answer_ids.expand(rows, -1)).sum(-1)

    def _new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.model.config)

    def _prefix_cache(self, prefix_len: int) -> DynamicCache | None:
        if prefix_len == 0:
            return None
        cache = self._new_cache()
        one = torch.ones(1, len(self.units), dtype=torch.bool, device=self.embeds.device)
        self._extend(cache, one, 0, prefix_len)
        return cache

    def _rows_cache(self, cache: DynamicCache | None, index: torch.Tensor) -> DynamicCache | None:
        return None if cache is None else _gather_rows(cache, index)

    # -- arbitrary rows (used for the auto-selection pass) --------------------------------------
    def score_rows(self, present: torch.Tensor) -> torch.Tensor:
        """v for each row of ``present`` [R, units]: shared prefix, then chunks of rows."""
        start = min(a for a, _ in self.units)
        rows = present.shape[0]
        self.total_tokens = start + rows * (self.seq_len - start)
        prefix = self._prefix_cache(start)
        out = torch.empty(rows, dtype=torch.float32, device=self.embeds.device)
        for lo in range(0, rows, self.chunk):
            hi = min(rows, lo + self.chunk)
            index = torch.zeros(hi - lo, dtype=torch.long, device=self.embeds.device)
            out[lo:hi] = self._score(self._rows_cache(prefix, index), present[lo:hi], start)
        return out

    # -- the full power set ---------------------------------------------------------------------
    def score_powerset(self, plan: LevelPlan, order: Sequence[int]) -> torch.Tensor:
        """v for all 2^n states in binary order (bit i = unit i). ``order[r]`` is the unit at
        position rank r; the plan's groups are lists of ranks."""
        device = self.embeds.device
        n = len(self.units)
        self.total_tokens = plan.tokens
        self._plan = plan
        self._levels = [[order[r] for r in g] for g in plan.groups]
        self._weights = (2 ** torch.arange(n, device=device)).long()
        self._out = torch.empty(2**n, dtype=torch.float32, device=device)
        root = torch.zeros(1, n, dtype=torch.bool, device=device)
        self._descend(0, [self._prefix_cache(plan.prefix_len)], root)
        return self._out

    def _descend(self, level: int, box: list[DynamicCache | None], parents: torch.Tensor) -> None:
        """Expand ``parents`` by all bit patterns of this level's units, in groups of ``chunk`` rows.

        The cache comes in a one-element list so that this frame holds the only reference and can
        drop it as soon as it is no longer needed (the parent of a single group is freed before the
        child level runs, which keeps at most ~one cache per oversubscribed level alive).
        """
        cache = box.pop()
        units = self._levels[level]
        start, end = self._plan.bounds[level]
        last = level == len(self._levels) - 1
        device = parents.device
        k = len(units)
        patterns = torch.arange(2**k, device=device)
        expand = torch.zeros(2**k, parents.shape[1], dtype=torch.bool, device=device)
        for b, u in enumerate(units):
            expand[:, u] = ((patterns >> b) & 1).bool()
        total = parents.shape[0] * 2**k
        group = min(total, self.chunk)
        n_groups = total // group
        for g in range(n_groups):
            rows = torch.arange(g * group, (g + 1) * group, device=device)
            parent_index = rows // 2**k
            present = parents[parent_index] | expand[rows % 2**k]
            if cache is None:
                child = None if last else self._new_cache()
            else:
                child = _gather_rows(cache, parent_index)
                if n_groups == 1:
                    cache = None
            if last:
                index = (present.long() * self._weights).sum(-1)
                self._out[index] = self._score(child, present, start)
            else:
                self._extend(child, present, start, end)
                sub = [child]
                del child
                self._descend(level + 1, sub, present)


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def _check_head(model: Any, head: OutputHead, embeds: torch.Tensor, k: int) -> bool:
    """Does our fp32 head reproduce the model's own logits on the unmasked sequence?"""
    full = embeds.unsqueeze(0)
    keep = {"logits_to_keep": k} if _accepts(model.forward, "logits_to_keep") else {}
    native = model(inputs_embeds=full, **keep).logits[:, -k:].float()
    ours = head(model.get_decoder()(inputs_embeds=full).last_hidden_state[:, -k:])
    if native.shape != ours.shape:
        return False
    eps = torch.finfo(embeds.dtype).eps
    tol = 1e-3 + 8 * eps * float(native.abs().max().clamp(min=1.0))
    return bool((native - ours).abs().max() <= tol)


def _context_limit(model: Any) -> int | None:
    cfg = model.config.get_text_config()
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def select_players(
    model: Any,
    tokenizer: Any,
    rendered: RenderedPrompt,
    players: str | Sequence[PlayerSpec | str | tuple[int, int] | Mapping[str, Any]],
    n_players: int,
    *,
    max_players: int = DEFAULT_MAX_PLAYERS,
    seed: int = 0,
    scorer: Callable[[Sequence[tuple[int, int]], torch.Tensor], torch.Tensor] | None = None,
) -> list[Player]:
    """Players by mode: "auto", "random", or caller spans (see :mod:`auditor.players`).

    "auto" keeps the n content words whose single-word masking moves v the most, measured with one
    batched pass (``scorer(units, present) -> v per row``); ties go to the earlier word.
    """
    if isinstance(players, str) and players in ("auto", "random"):
        check_count(n_players, max_players)
        if players == "random":
            return random_players(rendered, n_players, seed=seed, max_players=max_players)
        words = content_words(rendered)
        if not words:
            raise PlayerError("the prompt has no content words to use as players")
        if len(words) <= n_players:
            return words_to_players(words)
        if scorer is None:
            raise ValueError("auto selection needs a scorer")
        m = len(words)
        present = torch.ones(m + 1, m, dtype=torch.bool)
        present[torch.arange(1, m + 1), torch.arange(m)] = False
        v = scorer([(w.token_start, w.token_end) for w in words], present).double().cpu()
        effect = (v[0] - v[1:]).abs().tolist()
        top = sorted(range(m), key=lambda i: (-effect[i], i))[:n_players]
        return words_to_players([words[i] for i in sorted(top)])
    if isinstance(players, str):
        raise PlayerError(f"unknown player mode {players!r}; use 'auto', 'random' or a list of spans")
    return players_from_specs(rendered, players, max_players=max_players)


def score_masks(
    model: Any,
    tokenizer: Any,
    *,
    prompt: str | None = None,
    messages: Sequence[Mapping[str, Any]] | None = None,
    answer: str | Sequence[int] | None = None,
    players: str | Sequence[PlayerSpec | str | tuple[int, int] | Mapping[str, Any]] = "auto",
    n_players: int = 10,
    max_answer_tokens: int = 16,
    single_token: bool = False,
    baseline: str | torch.Tensor | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    progress: ProgressFn | None = None,
    strategy: Strategy = "auto",
    seed: int = 0,
    max_players: int = DEFAULT_MAX_PLAYERS,
) -> GameValues:
    """Score the model's answer on all 2^n masked prompts.

    Args:
        prompt / messages: a plain prompt, or chat messages rendered with the chat template.
        answer: text or token ids to teacher-force; None generates greedily (``max_answer_tokens``).
            Given answers are truncated to ``max_answer_tokens`` (K) tokens.
        players: "auto", "random" (seeded by ``seed``) or caller spans (:class:`PlayerSpec`, exact
            substrings, or (start, end) character offsets).
        single_token: score only the first answer token (next-token game).
        baseline: None (pad, else unk, else mean), "pad", "unk", "mean", or a [hidden] tensor.
        chunk_size: rows per forward call (rounded down to a power of two); default from
            ``memory_budget`` bytes (default: half of the GPU memory the weights leave, or 2 GiB on
            CPU; fixed per device and model, so the same audit always runs the same shapes).
        progress: called as ``progress(tokens_done, tokens_total)`` after each forward call.
        strategy: "auto" (shared prefix + trie levels chosen by cost), "trie", "prefix", "batched"
            or "single" (one mask per forward call); all give the same v up to float rounding.
    """
    t0 = time.perf_counter()
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
    rendered = render_prompt(tokenizer, prompt=prompt, messages=messages)
    k_cap = 1 if single_token else max_answer_tokens
    if k_cap < 1:
        raise ValueError("max_answer_tokens must be >= 1")
    answer_ids = _answer_ids(model, tokenizer, rendered.input_ids, answer, k_cap)
    vector, kind = resolve_baseline(model, tokenizer, baseline)
    emb_layer = model.get_input_embeddings()
    device = emb_layer.weight.device
    # Teacher forcing: logits at positions L-1 .. L+K-2 predict y_1 .. y_K.
    seq = list(rendered.input_ids) + answer_ids[:-1]
    limit = _context_limit(model)
    if limit is not None and len(seq) > limit:
        raise ValueError(f"prompt ({len(rendered.input_ids)} tokens) plus answer ({len(answer_ids)} tokens) "
                         f"exceeds the model's context of {limit} tokens")
    targets = torch.tensor(answer_ids, device=device)
    k = len(answer_ids)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            embeds = emb_layer(torch.tensor(seq, device=device))
            head: OutputHead | None
            try:
                head = OutputHead(model)
                if not _check_head(model, head, embeds, k):
                    warnings.warn("the fp32 output head disagrees with the model's logits; using the model's own head")
                    head = None
            except TypeError:
                head = None
            vocab = head.vocab_size if head is not None else int(model.config.get_text_config().vocab_size)
            if strategy != "single" and strategy != "batched" and not _cache_is_gatherable(model):
                warnings.warn("this model's cache cannot be shared across rows; falling back to batched")
                strategy = "batched"

            def chunk_for(states: int) -> int:
                if strategy == "single":
                    return 1
                if chunk_size is not None:
                    return min(states, _pow2_floor(chunk_size))
                return choose_chunk_size(model, len(seq), k, vocab, states, memory_budget)

            selection_tokens = 0

            def scorer(units: Sequence[tuple[int, int]], present: torch.Tensor) -> torch.Tensor:
                nonlocal selection_tokens
                engine = _Engine(model, embeds, vector, units, targets, head, chunk_for(2 ** len(units)))
                values = engine.score_rows(present.to(device))
                selection_tokens += engine.tokens
                return values

            chosen = select_players(
                model, tokenizer, rendered, players, n_players, max_players=max_players, seed=seed, scorer=scorer
            )
            n = len(chosen)
            chunk = chunk_for(2**n)
            order = sorted(range(n), key=lambda i: chosen[i].token_start)
            starts = [chosen[i].token_start for i in order]
            overhead = CALL_OVERHEAD_TOKENS["cuda" if device.type == "cuda" else "cpu"]
            plan = plan_levels(starts, len(seq), chunk, strategy, overhead)
            engine = _Engine(
                model, embeds, vector, [(p.token_start, p.token_end) for p in chosen], targets, head, chunk, progress
            )
            raw = engine.score_powerset(plan, order).double().cpu()
    finally:
        model.train(was_training)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cost = ScoreCost(
        forward_passes=engine.calls,
        tokens_computed=engine.tokens + selection_tokens,
        seconds=time.perf_counter() - t0,
        device=str(device),
        strategy=plan.strategy,
        chunk_size=chunk,
        selection_tokens=selection_tokens,
    )
    raw_empty = float(raw[0])
    return GameValues(
        values=raw - raw[0],
        raw_empty=raw_empty,
        players=tuple(chosen),
        baseline_kind=kind,
        answer_ids=tuple(answer_ids),
        answer_text=tokenizer.decode(answer_ids, skip_special_tokens=True),
        cost=cost,
        prompt_text=rendered.text,
        prompt_ids=rendered.input_ids,
        single_token=single_token,
        extras={"levels": [list(g) for g in plan.groups], "head": "fp32" if head is not None else "model"},
    )
