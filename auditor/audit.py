"""One audited request, end to end in the library: players -> masked scores -> AND-OR interactions.

Why a separate module: ``lm`` knows nothing of the solver and the solver nothing of models; this is
the one place that joins them with the naming convention the reports rely on (interaction names are
the players' texts, in player-index order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from auditor.engine.interactions import Interactions, SalientTerm
from auditor.game.scoring import GameValues, score_masks
from auditor.game.players import PlayerSpec


@dataclass(frozen=True)
class AuditResult:
    """The game (v over all masks, players, answer, cost) and its certified interactions."""

    game: GameValues
    interactions: Interactions

    def top(self, k: int = 10, threshold: float = 0.05) -> list[SalientTerm]:
        """The k strongest salient interactions (AND and OR), strongest first."""
        return self.interactions.salient(threshold)[:k]

    def describe(self, term: SalientTerm) -> str:
        """A term in words, e.g. ``AND(Alice, stole)``."""
        return term.label([p.text for p in self.game.players])

    def to_dict(self, k: int = 20) -> dict[str, Any]:
        names = [p.text for p in self.game.players]
        return {
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
    **score_kwargs: Any,
) -> AuditResult:
    """Audit one request: score all 2^n masked prompts, then extract AND-OR interactions.

    ``score_kwargs`` go to :func:`auditor.game.scoring.score_masks` (``max_answer_tokens``, ``single_token``,
    ``baseline``, ``chunk_size``, ``memory_budget``, ``progress``, ``strategy``, ``seed``, ...).
    """
    from auditor.engine.extraction import extract_interactions  # the LP stack is only needed here

    game = score_masks(
        model, tokenizer, prompt=prompt, messages=messages, answer=answer, players=players,
        n_players=n_players, **score_kwargs,
    )
    values = game.values.to(torch.float64)
    interactions = extract_interactions(values, qthres=qthres, mode=mode, names=[p.text for p in game.players])
    return AuditResult(game=game, interactions=interactions)
