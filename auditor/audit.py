"""One audited request, end to end in the library: players -> masked scores -> AND-OR interactions.

Why a separate module: ``lm`` knows nothing of the solver and the solver nothing of models; this is
the one place that joins them with the naming convention the reports rely on (interaction names are
the players' texts, in player-index order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from auditor.engine.interactions import Interactions, SalientTerm
from auditor.game.granularity import COARSE, check_granularity
from auditor.game.planning import OverBudgetError
from auditor.game.scoring import GameValues, score_masks
from auditor.game.players import PlayerError, PlayerSpec

PhaseFn = Callable[[str], None]


@dataclass(frozen=True)
class AuditResult:
    """The game (v over all masks, players, answer, cost) and its certified interactions."""

    game: GameValues
    interactions: Interactions
    fine: AuditResult | None = None
    """The refinement game (word players inside the most salient coarse players), if one ran."""
    refined: tuple[int, ...] = ()
    """Indices of the coarse players refined into ``fine``."""
    refine_note: str | None = None
    """Why no refinement ran although one was asked for (e.g. the token budget), else None."""

    @property
    def granularity(self) -> str:
        return str(self.game.extras.get("granularity", "words"))

    def top(self, k: int = 10, threshold: float = 0.05) -> list[SalientTerm]:
        """The k strongest salient interactions (AND and OR), strongest first."""
        return self.interactions.salient(threshold)[:k]

    def describe(self, term: SalientTerm) -> str:
        """A term in words, e.g. ``AND(Alice, stole)``."""
        return term.label([p.text for p in self.game.players])

    def to_dict(self, k: int = 20) -> dict[str, Any]:
        names = [p.text for p in self.game.players]
        out = self._level_dict(names, k)
        if self.fine is not None or self.refine_note is not None:
            out["refinement"] = {
                "refined_players": list(self.refined),
                "note": self.refine_note,
                **(self.fine._level_dict([p.text for p in self.fine.game.players], k) if self.fine else {}),
            }
        return out

    def _level_dict(self, names: list[str], k: int) -> dict[str, Any]:
        return {
            "granularity": self.granularity,
            "answer": self.game.answer_text,
            "answer_ids": list(self.game.answer_ids),
            "players": [p.to_dict() for p in self.game.players],
            "baseline": self.game.baseline_kind,
            "v_full": self.game.raw_full,
            "v_empty": self.game.raw_empty,
            "cost": self.game.cost.to_dict(),
            "certificate": {
                "objective": self.interactions.objective,
                "dual_bound": self.interactions.dual_bound,
                "gap": self.interactions.gap,
                "tau": self.interactions.tau,
            },
            "top_interactions": [
                {**t.to_dict(), "words": [names[i] for i in t.players], "label": t.label(names)} for t in self.top(k)
            ],
        }


def audit_prompt(
    model: Any,
    tokenizer: Any,
    prompt: str | None = None,
    messages: Sequence[Mapping[str, Any]] | None = None,
    answer: str | Sequence[int] | None = None,
    players: str | Sequence[PlayerSpec | str | tuple[int, int] | Mapping[str, Any]] = "auto",
    n_players: int = 10,
    qthres: float = 0.04,
    mode: str = "and-or",
    *,
    granularity: str | None = None,
    segments: Sequence[Any] | None = None,
    refine: int = 2,
    max_scored_tokens: int | None = None,
    on_phase: PhaseFn | None = None,
    **score_kwargs: Any,
) -> AuditResult:
    """Audit one request: score all 2^n masked prompts, then extract AND-OR interactions.

    ``granularity`` ("words", "sentences", "messages", "segments", "auto"; overrides ``players``)
    picks the players; ``segments`` are the caller's passages (dicts with ``id``, ``text`` or
    ``start``/``end``, ``label``). Coarse to fine: when the players are coarse (sentences, messages,
    passages, segments), the ``refine`` (0, 1 or 2) most salient of them (largest total |I| of the
    salient terms they take part in) are refined into word players in a second game, the other
    coarse players held present. ``max_scored_tokens`` bounds the token positions pushed through the
    model over both games (the exact plan is known before any forward): a coarse game over it raises
    :class:`~auditor.game.planning.OverBudgetError`; the refinement gets what is left, with fewer
    words if need be, and is skipped with ``refine_note`` if not even one word fits.
    ``on_phase`` is told each phase ("scoring masks", "solving", "refining") as it starts.

    ``score_kwargs`` go to :func:`auditor.game.scoring.score_masks` (``max_answer_tokens``, ``single_token``,
    ``baseline``, ``chunk_size``, ``memory_budget``, ``progress``, ``strategy``, ``seed``, ``system``, ...).
    """
    from auditor.engine.extraction import extract_interactions  # the LP stack is only needed here

    if granularity is not None:
        players = check_granularity(granularity)
    elif segments and players == "auto":
        players = "segments"
    if refine not in (0, 1, 2):
        raise ValueError(f"refine must be 0, 1 or 2 coarse players, got {refine}")
    phase = on_phase or (lambda name: None)
    phase("scoring masks")
    game = score_masks(
        model, tokenizer, prompt=prompt, messages=messages, answer=answer, players=players,
        n_players=n_players, segments=segments, max_tokens=max_scored_tokens, **score_kwargs,
    )
    phase("solving")
    values = game.values.to(torch.float64)
    interactions = extract_interactions(values, qthres=qthres, mode=mode, names=[p.text for p in game.players])
    coarse = AuditResult(game=game, interactions=interactions)
    if refine == 0 or game.extras.get("granularity") not in COARSE:
        return coarse
    strength = [0.0] * game.n
    for term in interactions.salient():
        for i in term.players:
            strength[i] += term.strength
    picks = tuple(sorted(i for i in sorted(range(game.n), key=lambda i: (-strength[i], i))[:refine] if strength[i] > 0))
    if not picks:
        return AuditResult(game, interactions, refine_note="no salient coarse player to refine")
    left = None if max_scored_tokens is None else max_scored_tokens - game.cost.tokens_computed
    phase("refining")
    try:
        fine = score_masks(
            model, tokenizer, prompt=prompt, messages=messages, answer=list(game.answer_ids), players="words",
            n_players=n_players, refine=[game.players[i] for i in picks], max_tokens=left,
            **{k: v for k, v in score_kwargs.items() if k not in ("seed", "system")},
        )
    except OverBudgetError as error:
        return AuditResult(game, interactions, refined=picks, refine_note=f"refinement skipped: {error}")
    except PlayerError as error:  # e.g. a refined passage with no content words
        return AuditResult(game, interactions, refined=picks, refine_note=f"refinement skipped: {error}")
    phase("solving")
    fine_inter = extract_interactions(fine.values.to(torch.float64), qthres=qthres, mode=mode,
                                      names=[p.text for p in fine.players])
    return AuditResult(game, interactions, fine=AuditResult(fine, fine_inter), refined=picks)
