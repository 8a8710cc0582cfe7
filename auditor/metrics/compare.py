"""Cross-model comparison of interactions (science.md section 3, "Cross-model comparison").

Two models explain the same prompts with the same players, the same answer text and the same kind
of masking baseline; we then ask how much of their reasoning they share.

Per prompt:

- **Overlap** (both directions): the share of A's salient terms (kind, player set) that are also
  salient in B *with the same sign*, and vice versa. Next to it, the **chance figure**: the same share
  for a random set of A's size drawn uniformly from all admissible terms (the 2^n - 1 AND terms
  and the 2^n - n - 1 OR terms of order >= 2: order-1 OR terms are merged into AND, so the
  2^(n+1) slots hold 2^(n+1) - n - 2 distinct terms), each with a random sign. Its expectation is
  |S_B| / (2 U), U the number of admissible terms; we report that and the 95th percentile of
  ``chance_draws`` seeded draws (the figure an overlap must beat to mean something).
- **Strength-weighted signed IoU** of the salient terms, each model's salient strengths scaled to
  unit total (so models with different output scales compare): sum over terms of
  [same sign] min(|a_t|, |b_t|) divided by sum of max(|a_t|, |b_t|). 1 for identical explanations.
- **Order profiles** side by side (``metrics.compute_metrics(...).order_profile``).
- **Non-generalizable strength**: ``metrics.fit_overfitting`` on each model's strength-per-order
  profile (all non-zero terms): the spindle share. Over all prompts, strength profiles are added up
  and fitted once (``metrics.overfitting_over_window``); the model with the larger share carries more
  spindle-shaped (non-generalizable) strength.
- **Shared interactions** of the joint objective of Chen et al. (ICLR 2024), see
  :func:`joint_extraction`: both games are split together, penalising each set of players by the
  larger of its two absolute values, so both models are pushed onto common terms. The terms salient
  in both models' joint splits are the shared interactions; the strength of a model's salient
  terms not salient in the other is its unshared share (science.md: "the share of interaction
  strength not shared with a reference model").

Same players and answer. Caller spans (character offsets or substrings of the plain prompt) are
used as given for both models. Without spans, the ``auto`` players are chosen by the model whose
answer is scored (A for ``gold`` and ``a``, B for ``b``) and passed to the other model as the same
character spans. The answer is the gold answer (``gold``) or the greedy answer of A or B; when
both tokenizers are identical the answer's token ids are passed, else its text. The baseline kind
(``pad``, ``unk``, ``mean``) resolved for the first model is requested from the second.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from auditor.engine.interactions import DEFAULT_SALIENT_THRESHOLD, Interactions, players_of
from auditor.metrics.compare_schema import (
    Aggregate,
    CompareSettings,
    ComparisonReport,
    JointSummary,
    ModelSummary,
    PromptComparison,
    SharedTerm,
    SideFigures,
)
from auditor.metrics.joint import DEFAULT_ALPHA, JOINT_MAX_PLAYERS, joint_extraction, joint_objective
from auditor.metrics.overlap import Term, chance_overlap, overlap, salient_map, salient_terms, signed_iou

__all__ = [
    "AnswerSource",
    "PromptItem",
    "CompareInputError",
    "load_prompts",
    "ModelUnderTest",
    "compare_interactions",
    "compare_models",
]

AnswerSource = Literal["gold", "a", "b"]


class CompareInputError(ValueError):
    """Bad comparison input (prompt file, spans, answer choice); the message names the problem."""


# ------------------------------------------------------------------------------------------------
# Input
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptItem:
    prompt: str
    answer: str | None = None
    spans: tuple[Any, ...] | None = None
    line: int = 0


def _coerce_span(span: Any, where: str) -> Any:
    from auditor.game.players import PlayerError, PlayerSpec

    try:
        if isinstance(span, list) and len(span) == 2 and all(isinstance(x, int) for x in span):
            return PlayerSpec(start=span[0], end=span[1])
        if isinstance(span, dict):
            span = dict(span)
            if "char_start" in span or "char_end" in span:
                span["start"], span["end"] = span.pop("char_start", None), span.pop("char_end", None)
        return PlayerSpec.coerce(span if not isinstance(span, list) else tuple(span))
    except (PlayerError, TypeError) as error:
        raise CompareInputError(f"{where}: bad span {span!r}: {error}") from None


def load_prompts(path: str | Path, limit: int | None = None) -> list[PromptItem]:
    """Read a JSONL file of ``{"prompt": str, "answer": optional gold str, "spans": optional list}``.

    A span is a substring, ``[start, end]`` character offsets, or an object with ``text`` or
    ``start``/``end`` (also ``char_start``/``char_end``), and optional ``label``, ``group`` and
    ``occurrence``. Blank lines and lines starting with ``#`` are skipped. Errors name the line.
    """
    path = Path(path)
    items: list[PromptItem] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as error:
                raise CompareInputError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj["prompt"].strip():
                raise CompareInputError(f"{where}: each line needs a non-empty string \"prompt\"")
            unknown = set(obj) - {"prompt", "answer", "spans", "id"}
            if unknown:
                raise CompareInputError(f"{where}: unknown field(s) {sorted(unknown)}; use prompt, answer, spans")
            answer = obj.get("answer")
            if answer is not None and (not isinstance(answer, str) or not answer.strip()):
                raise CompareInputError(f"{where}: \"answer\" must be a non-empty string")
            spans = obj.get("spans")
            if spans is not None:
                if not isinstance(spans, list) or not spans:
                    raise CompareInputError(f"{where}: \"spans\" must be a non-empty list")
                spans = tuple(_coerce_span(s, where) for s in spans)
            items.append(PromptItem(prompt=obj["prompt"], answer=answer, spans=spans, line=number))
            if limit is not None and len(items) >= limit:
                break
    if not items:
        raise CompareInputError(f"{path}: no prompts")
    return items


@dataclass
class ModelUnderTest:
    """A loaded model with what the comparison reports about it."""

    name: str
    model: Any
    tokenizer: Any
    model_id: str
    revision: str | None = None
    path: str | None = None


# ------------------------------------------------------------------------------------------------
# Comparing two extractions, then two models
# ------------------------------------------------------------------------------------------------
def _side(inter: Interactions, labels: Sequence[str] | None, threshold: float, v_full: float) -> SideFigures:
    from auditor.metrics.audit_metrics import compute_metrics, fit_overfitting, strength_by_order

    metrics = compute_metrics(inter, labels, salient_threshold=threshold)
    fit = fit_overfitting(strength_by_order(inter))
    return SideFigures(
        salient=metrics.sparsity, v_full=v_full, normaliser=inter.normaliser,
        order_profile_positive=metrics.order_profile.positive, order_profile_negative=metrics.order_profile.negative,
        strength_profile=fit.profile, overfitting=fit.score, misattribution=metrics.misattribution,
        certified_gap=inter.gap,
    )


def compare_interactions(
    a: Interactions,
    b: Interactions,
    *,
    names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    salient_threshold: float = DEFAULT_SALIENT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    joint: bool = True,
    chance_draws: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """All per-prompt comparison figures of two extractions on the same players."""
    if a.n != b.n:
        raise ValueError(f"the two games have different players ({a.n} vs {b.n})")
    names = list(names or a.names or [f"x{i}" for i in range(a.n)])
    labelled = labels is not None and any(label != "unlabelled" for label in labels)
    sa, sb = salient_map(a, salient_threshold), salient_map(b, salient_threshold)
    exp_ab, p95_ab = chance_overlap(len(sa), sb, a.n, draws=chance_draws, seed=seed, mode=a.mode)
    exp_ba, p95_ba = chance_overlap(len(sb), sa, a.n, draws=chance_draws, seed=seed + 1, mode=a.mode)
    out: dict[str, Any] = {
        "a": _side(a, labels if labelled else None, salient_threshold, float(a.values[-1] + a.offset)),
        "b": _side(b, labels if labelled else None, salient_threshold, float(b.values[-1] + b.offset)),
        "overlap_a_in_b": overlap(sa, sb), "overlap_b_in_a": overlap(sb, sa),
        "chance_a_in_b": exp_ab, "chance_b_in_a": exp_ba, "chance_p95_a_in_b": p95_ab, "chance_p95_b_in_a": p95_ba,
        "iou": signed_iou(sa, sb), "joint": None,
    }
    if joint:
        result = joint_extraction([a.values, b.values], qthres=a.qthres, alpha=alpha, mode=a.mode,
                                  taus=[a.tau, b.tau])
        ja = salient_terms(result.and_terms[0], result.or_terms[0], salient_threshold)
        jb = salient_terms(result.and_terms[1], result.or_terms[1], salient_threshold)
        shared = []
        for term in sorted(set(ja) & set(jb), key=lambda t: -(abs(ja[t]) + abs(jb[t]))):
            members = players_of(term[1])
            shared.append(SharedTerm(kind=term[0], players=list(members), words=[names[i] for i in members],
                                     order=len(members), value_a=ja[term], value_b=jb[term],
                                     same_sign=bool(np.sign(ja[term]) == np.sign(jb[term]))))

        def unshared(mine: dict[Term, float], other: dict[Term, float]) -> float | None:
            total = sum(abs(v) for v in mine.values())
            return sum(abs(v) for t, v in mine.items() if t not in other) / total if total > 0 else None

        out["joint"] = JointSummary(
            alpha=alpha, objective=result.objective,
            separate_objective=joint_objective([a.and_terms, b.and_terms], [a.or_terms, b.or_terms], alpha),
            salient_a=len(ja), salient_b=len(jb), shared=shared,
            shared_same_sign=sum(1 for s in shared if s.same_sign),
            unshared_share_a=unshared(ja, jb), unshared_share_b=unshared(jb, ja), seconds=result.seconds,
        )
    return out


def _same_tokenizer(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    except AttributeError:
        return False


def _audit_pair(first: ModelUnderTest, second: ModelUnderTest, item: PromptItem, answer: Any, *, n_players: int,
                qthres: float, max_answer_tokens: int, baseline: str | None, seed: int,
                say: Callable[[str], None]) -> tuple[Any, Any]:
    """Audit ``first`` (choosing players and, for answer None, the answer), then ``second`` on the same."""
    from auditor.audit import audit_prompt
    from auditor.game.players import PlayerSpec

    # "words", not "auto": a comparison is of word players, whatever the prompt's length
    players: Any = list(item.spans) if item.spans else "words"
    say(f"auditing {first.name}")
    r1 = audit_prompt(first.model, first.tokenizer, prompt=item.prompt, answer=answer, players=players,
                      n_players=n_players, qthres=qthres, max_answer_tokens=max_answer_tokens, baseline=baseline,
                      seed=seed)
    g1 = r1.game
    specs = [PlayerSpec(start=p.char_start, end=p.char_end, label=p.label, group=p.group) for p in g1.players]
    answer2: Any = list(g1.answer_ids) if _same_tokenizer(first.tokenizer, second.tokenizer) else g1.answer_text
    kind = g1.baseline_kind if g1.baseline_kind in ("pad", "unk", "mean") else baseline
    say(f"auditing {second.name}")
    r2 = audit_prompt(second.model, second.tokenizer, prompt=item.prompt, answer=answer2, players=specs,
                      n_players=n_players, qthres=qthres, max_answer_tokens=max_answer_tokens, baseline=kind,
                      seed=seed)
    g2 = r2.game
    if [(p.char_start, p.char_end) for p in g2.players] != [(p.char_start, p.char_end) for p in g1.players]:
        raise CompareInputError(
            f"line {item.line}: the two tokenizers do not cut the players the same way "
            f"({[p.text for p in g1.players]} vs {[p.text for p in g2.players]}); give spans on word boundaries")
    return r1, r2


def compare_models(
    model_a: ModelUnderTest,
    model_b: ModelUnderTest,
    items: Sequence[PromptItem],
    *,
    answer: AnswerSource = "gold",
    n_players: int = 10,
    qthres: float = 0.04,
    alpha: float = DEFAULT_ALPHA,
    salient_threshold: float = DEFAULT_SALIENT_THRESHOLD,
    max_answer_tokens: int = 16,
    baseline: str | None = None,
    joint: bool = True,
    chance_draws: int = 1000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    phase: Callable[[str], None] | None = None,
) -> ComparisonReport:
    """Audit both models on every prompt (same players, answer and baseline kind) and compare.

    ``progress(done, total)`` is called after each prompt, ``phase(text)`` when a step starts
    (auditing A, auditing B, comparing / joint LP), for progress bars.
    """
    if answer not in ("gold", "a", "b"):
        raise CompareInputError(f"unknown answer source {answer!r}; use gold, a or b")
    if answer == "gold":
        missing = [item.line for item in items if item.answer is None]
        if missing:
            raise CompareInputError(f"--answer gold needs an \"answer\" on every line; missing on line(s) {missing[:10]}")
    if joint and n_players > JOINT_MAX_PLAYERS:
        raise CompareInputError(f"the joint LP is limited to {JOINT_MAX_PLAYERS} players; lower --n or skip it")
    prompts: list[PromptComparison] = []
    results_a: list[Interactions] = []
    results_b: list[Interactions] = []
    for index, item in enumerate(items):
        def say(text: str, index: int = index) -> None:
            if phase is not None:
                phase(f"prompt {index + 1}/{len(items)}: {text}")

        if answer == "b":
            rb, ra = _audit_pair(model_b, model_a, item, None, n_players=n_players, qthres=qthres,
                                 max_answer_tokens=max_answer_tokens, baseline=baseline, seed=seed, say=say)
        else:
            ra, rb = _audit_pair(model_a, model_b, item, item.answer if answer == "gold" else None,
                                 n_players=n_players, qthres=qthres, max_answer_tokens=max_answer_tokens,
                                 baseline=baseline, seed=seed, say=say)
        say("comparing" + (" (joint LP)" if joint else ""))
        ga = ra.game
        labels = [p.label for p in ga.players]
        figures = compare_interactions(ra.interactions, rb.interactions, names=[p.text for p in ga.players],
                                       labels=labels, salient_threshold=salient_threshold, alpha=alpha, joint=joint,
                                       chance_draws=chance_draws, seed=seed + 2 * index)
        figures["a"].v_full = ga.raw_full
        figures["b"].v_full = rb.game.raw_full
        source = ga if answer != "b" else rb.game
        prompts.append(PromptComparison(
            index=index, line=item.line, prompt=item.prompt, answer=source.answer_text, answer_source=answer,
            players=[p.text for p in ga.players], labels=labels, n=ga.n, baseline=ga.baseline_kind, **figures,
        ))
        results_a.append(ra.interactions)
        results_b.append(rb.interactions)
        if progress is not None:
            progress(index + 1, len(items))

    def mean(xs: Sequence[float | None]) -> float | None:
        vals = [x for x in xs if x is not None]
        return float(np.mean(vals)) if vals else None

    def window(results: Sequence[Interactions]) -> float | None:
        from auditor.metrics.audit_metrics import overfitting_over_window, strength_by_order

        if not any(strength_by_order(r).sum() > 0 for r in results):
            return None
        return overfitting_over_window(results).score

    def profile(side: str, sign: str) -> list[float]:
        width = max((p.n for p in prompts), default=0)
        acc = np.zeros(width)
        for p in prompts:
            values = getattr(getattr(p, side), f"order_profile_{sign}")
            acc[:len(values)] += values
        return (acc / max(len(prompts), 1)).tolist()

    def summary(side: ModelUnderTest, key: str, results: Sequence[Interactions]) -> ModelSummary:
        return ModelSummary(
            name=side.name, model_id=side.model_id, revision=side.revision, path=side.path,
            window_overfitting=window(results),
            mean_overfitting=mean([getattr(p, key).overfitting for p in prompts]),
            mean_salient=mean([getattr(p, key).salient for p in prompts]),
            order_profile_positive=profile(key, "positive"), order_profile_negative=profile(key, "negative"),
            mean_unshared_share=mean([getattr(p.joint, f"unshared_share_{key}") for p in prompts if p.joint]),
        )

    sa, sb = summary(model_a, "a", results_a), summary(model_b, "b", results_b)
    if sa.window_overfitting is None or sb.window_overfitting is None:
        verdict, margin = None, None
    else:
        margin = sb.window_overfitting - sa.window_overfitting
        verdict = "tie" if abs(margin) < 1e-9 else ("b" if margin > 0 else "a")
    aggregate = Aggregate(
        prompts=len(prompts),
        overlap_a_in_b=mean([p.overlap_a_in_b for p in prompts]), overlap_b_in_a=mean([p.overlap_b_in_a for p in prompts]),
        chance_a_in_b=mean([p.chance_a_in_b for p in prompts]), chance_b_in_a=mean([p.chance_b_in_a for p in prompts]),
        iou=mean([p.iou for p in prompts]), more_non_generalizable=verdict, spindle_margin=margin,
        prompts_b_more_spindle=sum(1 for p in prompts if p.b.overfitting > p.a.overfitting),
        mean_shared=mean([len(p.joint.shared) for p in prompts if p.joint]),
    )
    settings = CompareSettings(
        answer=answer, n_players=n_players, qthres=qthres, alpha=alpha, salient_threshold=salient_threshold,
        baseline=baseline or "auto", max_answer_tokens=max_answer_tokens, chance_draws=chance_draws, seed=seed,
        joint=joint,
    )
    return ComparisonReport(model_a=sa, model_b=sb, settings=settings, aggregate=aggregate, prompts=prompts)
