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

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from auditor.game.answer import answer_token_ids
from auditor.game.loading import context_limit
from auditor.game.granularity import COARSE, GRANULARITIES, coarse_players, resolve_auto, within
from auditor.game.planning import (
    CALL_OVERHEAD_TOKENS,
    STRATEGIES,
    OverBudgetError,
    choose_chunk_size,
    plan_levels,
    pow2_floor,
)
from auditor.game.players import (
    DEFAULT_MAX_PLAYERS,
    NoPlayersError,
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
from auditor.game.trie import MaskedForward, ProgressFn, cache_is_gatherable
from auditor.game.value import OutputHead, head_matches_model, resolve_baseline

Strategy = Literal["auto", "trie", "prefix", "batched", "single"]


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
    messages: Sequence[Mapping[str, Any]] | None = None,
    segments: Sequence[Any] | None = None,
    system: str = "one",
    ranking: list[int] | None = None,
) -> list[Player]:
    """Players by mode: a granularity (:data:`~auditor.game.granularity.GRANULARITIES`: "words",
    "sentences", "messages", "segments", "auto"), "random", or caller spans (see
    :mod:`auditor.game.players`).

    "words" keeps the n content words whose single-word masking moves v the most, measured with one
    batched pass (``scorer(units, present) -> v per row``); ties go to the earlier word. "auto" is
    "words" for a short prompt and a coarse granularity for a long one
    (:func:`~auditor.game.granularity.resolve_auto`). ``ranking``, when given, is filled with the
    chosen word players' indices, most effective first (the budget drops from its end).
    """
    if isinstance(players, str) and players == "auto":
        n_messages = len([m for m in messages or [] if str(m.get("content") or "").strip()])
        players = resolve_auto(rendered, segments, n_messages)
    if isinstance(players, str) and players in COARSE:
        return coarse_players(rendered, players, messages=messages, segments=segments, system=system,
                              max_players=min(max_players, 12))
    if segments:
        raise PlayerError(f"segments: given, but the players are {players!r}; use granularity 'segments' or 'auto'")
    if isinstance(players, str) and players in ("words", "random"):
        check_count(n_players, max_players)
        if players == "random":
            return random_players(rendered, n_players, seed=seed, max_players=max_players)
        words = content_words(rendered)
        if not words:
            raise NoPlayersError("the prompt has no content words to use as players")
        if len(words) <= n_players:
            if ranking is not None:
                ranking[:] = list(range(len(words)))
            return words_to_players(words)
        if scorer is None:
            raise ValueError("auto selection needs a scorer")
        m = len(words)
        present = torch.ones(m + 1, m, dtype=torch.bool)
        present[torch.arange(1, m + 1), torch.arange(m)] = False
        v = scorer([(w.token_start, w.token_end) for w in words], present).double().cpu()
        effect = (v[0] - v[1:]).abs().tolist()
        top = sorted(range(m), key=lambda i: (-effect[i], i))[:n_players]
        if ranking is not None:  # position index of each pick, most effective first
            position = {w: r for r, w in enumerate(sorted(top))}
            ranking[:] = [position[w] for w in top]
        return words_to_players([words[i] for i in sorted(top)])
    if isinstance(players, str):
        raise PlayerError(f"granularity: unknown player mode {players!r}; use one of {GRANULARITIES}, "
                          "'random' or a list of spans")
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
    segments: Sequence[Any] | None = None,
    system: str = "one",
    refine: Sequence[Player] | None = None,
    max_tokens: int | None = None,
    strict_memory: bool = False,
) -> GameValues:
    """Score the model's answer on all 2^n masked prompts.

    Args:
        prompt / messages: a plain prompt, or chat messages rendered with the chat template.
        answer: text or token ids to teacher-force; None generates greedily (``max_answer_tokens``).
            Given answers are truncated to ``max_answer_tokens`` (K) tokens.
        players: a granularity ("words", "sentences", "messages", "segments", "auto"), "random"
            (seeded by ``seed``) or caller spans (:class:`PlayerSpec`, exact substrings, or (start,
            end) character offsets). ``segments`` are the caller's coarse players
            (:class:`~auditor.game.granularity.SegmentSpec` or dicts with ``id``, ``text`` or
            ``start``/``end``, ``label``); ``system`` ("one" or "sentences") splits a system prompt.
        refine: coarse players of an earlier game: word players are chosen inside them only, every
            other token (the other coarse players included) stays present.
        max_tokens: budget of token positions pushed through the model (selection pass plus the
            trie plan, known exactly before any forward). Over it, word players are dropped least
            effective first; a game that still does not fit raises :class:`OverBudgetError`.
        strict_memory: ``memory_budget`` is a hard limit: a single row over it raises
            :class:`OverBudgetError` (a budget set by the operator), instead of running one row.
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
    answer_ids = answer_token_ids(model, tokenizer, rendered.input_ids, answer, k_cap)
    vector, kind = resolve_baseline(model, tokenizer, baseline)
    emb_layer = model.get_input_embeddings()
    device = emb_layer.weight.device
    # Teacher forcing: logits at positions L-1 .. L+K-2 predict y_1 .. y_K.
    seq = list(rendered.input_ids) + answer_ids[:-1]
    limit = context_limit(model)
    if limit is not None and len(seq) > limit:
        raise OverBudgetError(f"prompt ({len(rendered.input_ids)} tokens) plus answer ({len(answer_ids)} tokens) "
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
                if not head_matches_model(model, head, embeds, k):
                    warnings.warn("the fp32 output head disagrees with the model's logits; using the model's own head")
                    head = None
            except TypeError:
                head = None
            vocab = head.vocab_size if head is not None else int(model.config.get_text_config().vocab_size)
            if strategy != "single" and strategy != "batched" and not cache_is_gatherable(model):
                warnings.warn("this model's cache cannot be shared across rows; falling back to batched")
                strategy = "batched"

            def chunk_for(states: int) -> int:
                if strategy == "single":
                    return 1
                if chunk_size is not None:
                    return min(states, pow2_floor(chunk_size))
                return choose_chunk_size(model, len(seq), k, vocab, states, memory_budget, strict=strict_memory)

            selection_tokens = 0

            def scorer(units: Sequence[tuple[int, int]], present: torch.Tensor) -> torch.Tensor:
                nonlocal selection_tokens
                start = min(a for a, _ in units)  # the pass costs exactly its prefix plus rows x the rest
                cost = start + present.shape[0] * (len(seq) - start)
                if max_tokens is not None and selection_tokens + cost > max_tokens:
                    raise OverBudgetError(
                        f"choosing word players needs {cost} scored tokens, over the budget of {max_tokens} "
                        "(max_scored_tokens, AUDITOR_MAX_SCORED_TOKENS)"
                    )
                engine = MaskedForward(model, embeds, vector, units, targets, head, chunk_for(2 ** len(units)))
                values = engine.score_rows(present.to(device))
                selection_tokens += engine.tokens
                return values

            ranking: list[int] = []
            resolved = players
            if players == "auto":
                n_messages = len([m for m in messages or [] if str(m.get("content") or "").strip()])
                resolved = resolve_auto(rendered, segments, n_messages)
            chosen = select_players(
                model, tokenizer, within(rendered, refine) if refine else rendered, resolved, n_players,
                max_players=max_players, seed=seed, scorer=scorer, messages=messages, segments=segments,
                system=system, ranking=ranking,
            )
            if refine:  # a refined word carries its coarse player's label (a word of an irrelevant passage)
                chosen = [_inherit(p, refine) for p in chosen]
            overhead = CALL_OVERHEAD_TOKENS["cuda" if device.type == "cuda" else "cpu"]
            while True:
                n = len(chosen)
                chunk = chunk_for(2**n)
                order = sorted(range(n), key=lambda i: chosen[i].token_start)
                starts = [chosen[i].token_start for i in order]
                plan = plan_levels(starts, len(seq), chunk, strategy, overhead)
                if max_tokens is None or plan.tokens + selection_tokens <= max_tokens:
                    break
                if len(ranking) != n or n <= 1:
                    raise OverBudgetError(
                        f"the game on {n} players needs {plan.tokens + selection_tokens} scored tokens, over the "
                        f"budget of {max_tokens} (max_scored_tokens, AUDITOR_MAX_SCORED_TOKENS); use fewer "
                        "players, a coarser granularity or a larger budget"
                    )
                drop = ranking.pop()  # the least effective word player goes first
                ranking[:] = [r - (r > drop) for r in ranking]
                chosen = [p for i, p in enumerate(chosen) if i != drop]
                chosen = [Player(i, *_fields(p)) for i, p in enumerate(chosen)]
            engine = MaskedForward(
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
        extras={"levels": [list(g) for g in plan.groups], "head": "fp32" if head is not None else "model",
                "granularity": resolved if isinstance(resolved, str) else "spans"},
    )


def _fields(p: Player) -> tuple[Any, ...]:
    return (p.text, p.char_start, p.char_end, p.token_start, p.token_end, p.label, p.group, p.segment_id)


def _inherit(word: Player, coarse: Sequence[Player]) -> Player:
    """``word`` with the label and segment id of the coarse player it lies in."""
    owner = next((c for c in coarse if c.char_start <= word.char_start and word.char_end <= c.char_end), None)
    if owner is None:
        return word
    return Player(word.index, word.text, word.char_start, word.char_end, word.token_start, word.token_end,
                  owner.label, word.group, owner.segment_id)
