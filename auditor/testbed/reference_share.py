"""The share of a model's interaction strength not shared with a reference model (science.md section 3).

science.md: "where a reference model is available, also report the share of interaction strength
not shared with it". In a testbed world the reference is the world's ``clean`` model: trained on
the same natural data as every other model, without a planted flaw, so what another model does
not share with it is the part of its reasoning the flaw (a shortcut, memorised noise) put there.

The figure is ``compare``'s (``auditor.metrics.compare``): both games are split jointly (Chen et
al., ICLR 2024) and the strength of the audited model's salient joint terms that are not salient in
the reference's joint split, divided by all its salient joint strength (``unshared_share_a``).
``compare`` requires the same prompt, players, answer and kind of masking baseline, so that the two
games are the same function of the same masks; here that is each audited model's own game as
``validate`` played it (its own answer: production audits the answer the model gave), and the
clean model is teacher-forced on that same answer with the same players and baseline kind. Where
both models gave the same answer, the clean model's own audit is that game already and is reused;
where they differ (the shortcut model on a conflict prompt answers the cue's charge, the clean
model the truth) the clean model is audited once more, on the other model's answer. Scoring the
clean model on its own answer instead would compare explanations of two different outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from auditor.engine.interactions import DEFAULT_SALIENT_THRESHOLD, Interactions
from auditor.metrics.compare import compare_interactions
from auditor.metrics.joint import DEFAULT_ALPHA

__all__ = ["PlayedGame", "mean_share", "replay_with", "unshared_share", "unshared_with_reference",
           "world_reference_shares"]


@dataclass(frozen=True)
class PlayedGame:
    """What ``validate`` keeps of one audit for the reference column: the split, the answer it
    explains (token ids) and the masking baseline kind it was played with."""

    interactions: Interactions
    answer_ids: tuple[int, ...]
    baseline_kind: str


def unshared_share(
    audited: Interactions,
    reference: Interactions,
    *,
    salient_threshold: float = DEFAULT_SALIENT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> float | None:
    """``compare``'s unshared share of ``audited`` against ``reference`` (same players and answer).

    None when the audited model has no salient joint term (nothing to share or not).
    """
    figures = compare_interactions(audited, reference, salient_threshold=salient_threshold, alpha=alpha,
                                   joint=True, chance_draws=0)
    return figures["joint"].unshared_share_a


def unshared_with_reference(
    games: Mapping[str, Sequence[PlayedGame]],
    reference: str,
    replay: Callable[[int, Sequence[int], str], Interactions],
    *,
    salient_threshold: float = DEFAULT_SALIENT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> dict[str, list[float | None]]:
    """Per model other than ``reference``, per prompt: the share of its strength the reference does not share.

    ``games[name][i]`` is model ``name``'s game on prompt ``i`` (every model on the same prompts);
    ``replay(i, answer_ids, baseline_kind)`` audits the reference model on prompt ``i`` with the
    same players, teacher-forced on ``answer_ids``. It is called once per prompt and distinct
    answer that the reference did not give itself.
    """
    own = games[reference]
    replayed: dict[tuple[int, tuple[int, ...], str], Interactions] = {}

    def reference_game(index: int, game: PlayedGame) -> Interactions:
        mine = own[index]
        if game.answer_ids == mine.answer_ids and game.baseline_kind == mine.baseline_kind:
            return mine.interactions
        key = (index, game.answer_ids, game.baseline_kind)
        if key not in replayed:
            replayed[key] = replay(index, list(game.answer_ids), game.baseline_kind)
        return replayed[key]

    out: dict[str, list[float | None]] = {}
    for name, played in games.items():
        if name == reference:
            continue
        if len(played) != len(own):
            raise ValueError(f"{name} was audited on {len(played)} prompts, the reference on {len(own)}")
        out[name] = [unshared_share(game.interactions, reference_game(index, game),
                                    salient_threshold=salient_threshold, alpha=alpha)
                     for index, game in enumerate(played)]
    return out


def replay_with(model: Any, tokenizer: Any, prompts: Sequence[Any], *,
                qthres: float) -> Callable[[int, Sequence[int], str], Interactions]:
    """The ``replay`` of :func:`unshared_with_reference` for a loaded reference model and the
    world's audit prompts (``AuditPrompt``), audited exactly as ``validate`` audits: one answer
    token, the prompt's labelled players."""
    from auditor.audit import audit_prompt

    def replay(index: int, answer_ids: Sequence[int], baseline_kind: str) -> Interactions:
        prompt = prompts[index]
        return audit_prompt(model, tokenizer, prompt=prompt.prompt, players=prompt.player_specs(),
                            answer=list(answer_ids), max_answer_tokens=1, qthres=qthres,
                            baseline=baseline_kind).interactions

    return replay


def world_reference_shares(
    games: Mapping[str, Sequence[PlayedGame]], prompts_count: int, *, root: Any = None, seed: int = 0,
    template_set: str = "standard", qthres: float = 0.04,
) -> dict[str, list[float | None]]:
    """:func:`unshared_with_reference` in a testbed world: its ``clean`` model is the reference,
    replayed on the world's first ``prompts_count`` conflict prompts (those ``validate`` audits)."""
    from auditor.testbed import models as testbed
    from auditor.testbed.names import CLEAN

    model, tokenizer, info = testbed.load(CLEAN, root, seed=seed, template_set=template_set)
    prompts = testbed.audit_prompts_for(info, prompts_count, conflict=True)
    return unshared_with_reference(games, CLEAN, replay_with(model, tokenizer, prompts, qthres=qthres))


def mean_share(shares: Sequence[float | None]) -> float | None:
    """A model's figure: the mean over the prompts where it is defined; None for the reference
    itself (no shares) or when no prompt had a salient joint term."""
    defined = [share for share in shares if share is not None]
    return sum(defined) / len(defined) if defined else None
