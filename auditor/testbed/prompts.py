"""The testbed's prompts as data: labelled spans, defendants, and an audit prompt with its answer.

Handed to the trainers (``auditor.testbed.train``), to the acceptance checks and, through
:func:`to_player_specs`, to the audit's players (``auditor.game.players``). Sampling them is
``auditor.testbed.corpus``'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from auditor.game.players import Label, PlayerSpec
from auditor.testbed.lexicon import charge_for

Mode = Literal["natural", "shortcut", "conflict"]
"""Sampling modes: defendants independent; the first-mentioned one's charge planted as a cue; cue and truth disagree."""

DEFAULT_MAX_PLAYERS = 10


@dataclass(frozen=True)
class Span:
    """A labelled character span of a prompt: one candidate player.

    ``start``/``end`` are character offsets into ``AuditPrompt.prompt`` (end exclusive);
    ``occurrence`` is the index of this occurrence among all occurrences of ``text`` in the prompt
    (counting overlapping matches from the left), for callers that address spans by substring.
    ``group`` says whose fact it is: ``queried``, ``cue`` (the first-mentioned defendant when it is
    not the queried one), ``codefendant``, or ``context`` (witness, venue). ``role`` says what the
    word is: ``name``, ``act``, ``object`` (what the act was done to: "the house of"),
    ``circumstance``, ``occupation``, ``victim``, ``instrument``, ``witness``, ``venue``.
    ``in_question`` marks the name's mention in the final question: it is labelled (it is the
    queried defendant's name) but never a player, see ``select_spans``.
    """

    text: str
    start: int
    end: int
    label: Label
    group: str
    role: str
    occurrence: int
    in_question: bool = False

    def as_tuple(self) -> tuple[str, int, int, str, str]:
        """``(substring, start, end, label, group)`` for callers that want plain data."""
        return (self.text, self.start, self.end, self.label, self.group)


@dataclass(frozen=True)
class Defendant:
    """One defendant's facts as sampled (``None`` for facts the template did not state)."""

    name: str
    act: str
    occupation: str | None
    victim: str | None
    instrument: str | None
    circumstance: str | None

    @property
    def charge(self) -> str:
        return charge_for(self.act, self.circumstance)


@dataclass(frozen=True)
class AuditPrompt:
    """A prompt with its gold answer and the ground truth about every candidate player.

    ``prompt`` ends with the question, whose last word is the queried name; the one-word answer
    follows right after it. ``cue_answer`` is what the planted shortcut predicts: the charge of the
    first-mentioned defendant.
    ``spans`` holds at most ``max_players`` labelled spans, in prompt order; ``all_spans`` every
    labelled span the generator knows of.
    """

    prompt: str
    answer: str
    cue_answer: str
    spans: tuple[Span, ...]
    defendants: tuple[Defendant, ...]
    queried: int
    template_set: str
    mode: Mode
    all_spans: tuple[Span, ...] = field(repr=False, default=())

    @property
    def messages(self) -> list[dict[str, str]]:
        """The prompt as a chat conversation; the testbed chat template renders it unchanged."""
        return [{"role": "user", "content": self.prompt}]

    @property
    def conflict(self) -> bool:
        return self.cue_answer != self.answer

    @property
    def labels(self) -> list[str]:
        return [span.label for span in self.spans]

    def span_tuples(self) -> list[tuple[str, int, int, str, str]]:
        return [span.as_tuple() for span in self.spans]

    def player_specs(self) -> list[Any]:
        """The spans as ``auditor.game.players.PlayerSpec`` objects (see ``to_player_specs``)."""
        return to_player_specs(self.spans)


def to_player_specs(spans: Sequence[Span]) -> list[PlayerSpec]:
    """Convert spans to ``auditor.game.players.PlayerSpec``: character offsets, label and group.

    Offsets, not text: a word such as a name occurs several times in a prompt (its fact and the
    question), so the precise way to place a span is used.
    """
    return [PlayerSpec(start=span.start, end=span.end, label=span.label, group=span.group) for span in spans]
