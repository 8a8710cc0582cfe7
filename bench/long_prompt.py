"""The long-prompt layout of ``bench/scoring.py``: passages as players, and one audit end to end.

Why a module of its own: the passage layout is what issue 19 is about (a RAG or case-file prompt of
hundreds to thousands of tokens, each retrieved passage one player, so one level of the mask trie),
and it is measured twice: the scoring strategies side by side (``scoring.py``'s table), and one
audit as the product runs it (:func:`auditor.audit.audit_prompt` at segment granularity: scoring,
the LP, the coarse-to-fine refinement and the metrics), which is what the <= 10 s target is about.

The prompt is synthetic (word-level: one word = one token, so every span is known exactly and a
test can count tokens without the library), the dossier testbed world's longest case file
(``--case-file dossier``: the longest of its first 40 audit files, passages as segments with
their planted labels, in the world's own word-level tokenizer), or a caller's file
(``--prompt-file``: any prompt with its segments, for ``--model PATH|testbed:NAME``).

Synthetic layout (``synthetic_passages``): ``head`` instruction tokens, ``n`` contiguous passages
that share the rest of the prompt as evenly as integer division allows (passage i covers tokens
``head + body * i // n`` to ``head + body * (i + 1) // n``, ``body = prompt_tokens - head - tail``),
then ``tail`` question tokens. Passage 1 is labelled ``relevant`` (the deciding act), passage
``n - 3`` ``forbidden`` (e.g. a prior record), the others ``irrelevant``, as in a dossier case file.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DOSSIER_HEAD = 12
"""Instruction tokens before the first passage ("Case file. Read the passages and decide ...")."""
DOSSIER_TAIL = 12
"""Question tokens after the last passage: the question sits at the end, as in a RAG prompt."""


@dataclass(frozen=True)
class PassageRequest:
    """One long prompt and its passages (``segments``: dicts with ``id``, ``text``, ``label``)."""

    prompt: str
    segments: list[dict[str, str]]
    answer: list[int] | str | None
    source: str


def passage_bounds(prompt_tokens: int, n: int, head: int = DOSSIER_HEAD, tail: int = DOSSIER_TAIL) -> list[int]:
    """Token boundaries of the synthetic passages: passage i is ``[bounds[i], bounds[i + 1])``."""
    body = prompt_tokens - head - tail
    if n < 1 or body < n:
        raise SystemExit(f"--prompt-tokens {prompt_tokens} leaves {body} tokens for {n} passages "
                         f"after {head} instruction and {tail} question tokens")
    return [head + body * i // n for i in range(n + 1)]


def passage_label(i: int, n: int) -> str:
    if i == min(1, n - 1):
        return "relevant"
    if n >= 3 and i == n - 3:
        return "forbidden"
    return "irrelevant"


def synthetic_passages(vocab_size: int, prompt_tokens: int, answer_tokens: int, n: int, seed: int,
                       head: int = DOSSIER_HEAD, tail: int = DOSSIER_TAIL) -> PassageRequest:
    """A case-file-shaped prompt of random words "w3".."w{V-1}" (one word = one token), passages
    separated by newlines (whitespace: no token), and a random answer of ``answer_tokens`` ids."""
    g = torch.Generator().manual_seed(seed)
    words = [f"w{int(i)}" for i in torch.randint(3, vocab_size, (prompt_tokens,), generator=g)]
    bounds = passage_bounds(prompt_tokens, n, head, tail)
    parts = [" ".join(words[:head])] if head else []
    segments = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        text = " ".join(words[a:b])
        parts.append(text)
        segments.append({"id": f"passage-{i}", "text": text, "label": passage_label(i, n)})
    if tail:
        parts.append(" ".join(words[bounds[-1]:]))
    answer = torch.randint(3, vocab_size, (answer_tokens,), generator=g).tolist()
    return PassageRequest("\n".join(parts), segments, answer, "synthetic")


def load_prompt_file(path: str | Path) -> PassageRequest:
    """A caller's long prompt: JSON ``{"prompt": str, "segments": [{"id", "text", "label"}, ...],
    "answer": str (optional; default: the model's greedy answer)}``."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str) or not data.get("segments"):
        raise SystemExit(f"--prompt-file {path}: need a JSON object with 'prompt' and 'segments'")
    return PassageRequest(data["prompt"], list(data["segments"]), data.get("answer"), str(path))


def dossier_case_file(tokenizer: Any, seed: int = 0, count: int = 40, answer: bool = True) -> PassageRequest:
    """The longest (in ``tokenizer``'s tokens) of the dossier world's first ``count`` audit files:
    its passages as segments (character ranges, planted labels) and, with ``answer``, its gold
    answer (for a random-init model, whose own answer would be noise; a trained model answers itself)."""
    from auditor.testbed.dossier_corpus import audit_dossiers

    files = audit_dossiers(seed, count)
    longest = max(files, key=lambda f: (len(tokenizer(f.prompt)["input_ids"]), f.prompt))
    return PassageRequest(longest.prompt, longest.segments(), longest.answer if answer else None,
                          f"dossier world, longest of audit files 0-{count - 1} (seed {seed})")


def dossier_tokenizer() -> Any:
    """The dossier world's word-level tokenizer, as its models are built with."""
    from auditor.testbed.dossier_corpus import vocabulary_texts
    from auditor.testbed.tokenizer import build_tokenizer

    return build_tokenizer(vocabulary_texts())


def segment_token_spans(tokenizer: Any, request: PassageRequest) -> tuple[list[tuple[int, int]], int]:
    """The passages' token spans (position order) as the library locates them, and the prompt length."""
    from auditor.game.granularity import segment_players
    from auditor.game.players import render_prompt

    rendered = render_prompt(tokenizer, prompt=request.prompt)
    players = segment_players(rendered, request.segments)
    return sorted((p.token_start, p.token_end) for p in players), len(rendered)


def audit_end_to_end(model: Any, tokenizer: Any, request: PassageRequest, answer: list[int],
                     max_answer_tokens: int, refine: int, repeat: int) -> dict[str, Any]:
    """Time one audit as the product runs it: ``audit_prompt`` at segment granularity (scoring,
    the LP, the refinement of the ``refine`` most salient passages into words) plus the metrics of
    both levels. The LP kernels are compiled (or loaded from numba's cache) first, as the auditor
    service does at start-up; the first audit is reported apart (``cold_seconds``: allocator and
    kernel warm-up), the middle of ``repeat`` further audits (the upper middle for an even count,
    with its phases and counts) is ``seconds``, their median ``median_seconds`` (``repeat`` 0: the
    first audit is the measurement, for runs whose kernels the strategy table already warmed). ``cpu_seconds`` is the
    process's CPU time over the same audit (all threads): on a shared machine the wall clock also
    measures the neighbours, the CPU time does not (with one thread it is the quiet-machine wall time)."""
    from auditor.audit import audit_prompt
    from auditor.engine import simplex
    from auditor.metrics.audit_metrics import compute_metrics

    simplex.warm_up()
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)

    def once() -> dict[str, Any]:
        stamps: list[tuple[str, float]] = []
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        result = audit_prompt(
            model, tokenizer, prompt=request.prompt, answer=answer, granularity="segments",
            segments=request.segments, refine=refine, max_answer_tokens=max_answer_tokens,
            on_phase=lambda name: stamps.append((name, time.perf_counter())),
        )
        stamps.append(("metrics", time.perf_counter()))
        labels = [p.label for p in result.game.players]
        metrics = compute_metrics(result.interactions, labels)
        fine_metrics = None
        if result.fine is not None:
            fine_metrics = compute_metrics(result.fine.interactions, [p.label for p in result.fine.game.players])
        sync()
        end, cpu = time.perf_counter(), time.process_time() - c0
        phases: dict[str, float] = {}
        for (name, at), (_, nxt) in zip(stamps, stamps[1:] + [("end", end)]):
            phases[name] = phases.get(name, 0.0) + (nxt - at)
        fine = result.fine
        return {
            "seconds": end - t0,
            "cpu_seconds": cpu,
            "phase_seconds": phases,
            "n_players": result.game.n,
            "granularity": result.granularity,
            "tokens_computed": result.game.cost.tokens_computed + (fine.game.cost.tokens_computed if fine else 0),
            "forward_calls": result.game.cost.forward_passes + (fine.game.cost.forward_passes if fine else 0),
            "coarse_tokens": result.game.cost.tokens_computed,
            "refined_players": list(result.refined),
            "refine_note": result.refine_note,
            "fine_n_players": fine.game.n if fine else 0,
            "fine_tokens": fine.game.cost.tokens_computed if fine else 0,
            "fine_selection_tokens": fine.game.cost.selection_tokens if fine else 0,
            "gap": result.interactions.gap,
            "misattribution": metrics.misattribution,
            "fine_misattribution": fine_metrics.misattribution if fine_metrics else None,
            "sparsity": metrics.sparsity,
        }

    cold = once()
    runs = [once() for _ in range(repeat)] or [cold]
    middle = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {**middle, "cold_seconds": cold["seconds"], "repeats": repeat,
            "all_seconds": [r["seconds"] for r in runs],
            "median_seconds": statistics.median(r["seconds"] for r in runs), "refine": refine}
