"""What the LLM service hands the auditor: one audit job (prompt or chat, the answer, labelled spans).

Its own module so that the LLM side (``service/hook.py``, ``service/schemas.py``) can build and
validate jobs with pydantic alone, without importing the worker, torch or the solver.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from auditor.game.players import Label as PlayerLabel
from auditor.game.players import PlayerSpec
from auditor.runtime.records import utc_now

__all__ = ["ChatMessage", "PlayerHint", "SegmentHint", "AuditJob", "PlayerLabel", "Granularity"]

Granularity = Literal["words", "sentences", "messages", "segments", "auto"]
"""= ``auditor.game.granularity.GRANULARITIES`` (checked in tests/runtime/test_granularity_jobs.py)."""
MAX_SEGMENTS = 12  # = auditor.game.granularity.MAX_COARSE_PLAYERS


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = Field(min_length=1, max_length=64)
    content: str


class PlayerHint(BaseModel):
    """A caller-given player: an exact substring of the prompt (``text``, first occurrence, or the
    ``occurrence``-th) or character offsets ``start``/``end`` (end exclusive), with a label."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, min_length=1, max_length=2000)
    # strict: "3" and true are not offsets (a JSON string or bool is a client bug, answered 4xx)
    start: StrictInt | None = Field(None, ge=0, le=1_000_000)
    end: StrictInt | None = Field(None, ge=0, le=1_000_000)
    occurrence: StrictInt = Field(0, ge=0, le=1_000_000)
    label: PlayerLabel = "unlabelled"
    group: str | None = Field(None, max_length=128)

    @model_validator(mode="after")
    def _one_way(self) -> PlayerHint:
        has_offsets = self.start is not None or self.end is not None
        if self.text is None and not has_offsets:
            raise ValueError("a player span needs `text` or `start` and `end`")
        if has_offsets:
            if self.start is None or self.end is None:
                raise ValueError("a player span needs both `start` and `end`")
            if self.end <= self.start:
                raise ValueError("a player span needs `end` > `start`")
        return self

    def locate(self, prompt: str) -> tuple[int, int]:
        """Character span of this hint in ``prompt``; ``ValueError`` naming the problem otherwise."""
        if self.start is not None and self.end is not None:
            if self.end > len(prompt):
                raise ValueError(f"span {self.start}:{self.end} is outside the prompt (length {len(prompt)})")
            if self.text is not None and prompt[self.start : self.end] != self.text:
                raise ValueError(f"span {self.start}:{self.end} does not contain {self.text!r}")
            return self.start, self.end
        assert self.text is not None
        pos = -1
        for _ in range(self.occurrence + 1):
            pos = prompt.find(self.text, pos + 1)
            if pos < 0:
                raise ValueError(f"{self.text!r} is not in the prompt" + (
                    f" {self.occurrence + 1} times" if self.occurrence else ""))
        return pos, pos + len(self.text)

    def to_spec(self) -> PlayerSpec:
        """The library's player span for this hint (offsets win over text, as in :meth:`locate`)."""
        if self.start is not None and self.end is not None:
            return PlayerSpec(start=self.start, end=self.end, label=self.label, group=self.group)
        return PlayerSpec(text=self.text, occurrence=self.occurrence, label=self.label, group=self.group)


class SegmentHint(BaseModel):
    """A caller-given coarse player (a retrieved passage, a tool output): ``id`` names it in errors,
    records and reports; ``text`` (an exact substring of the prompt or of any chat message) or
    ``start``/``end`` (offsets into the plain prompt or the last user message); a ``label``."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
    text: StrictStr | None = Field(None, min_length=1, max_length=100_000)
    start: StrictInt | None = Field(None, ge=0, le=10_000_000)
    end: StrictInt | None = Field(None, ge=0, le=10_000_000)
    label: PlayerLabel = "unlabelled"

    @model_validator(mode="after")
    def _one_way(self) -> SegmentHint:
        by_offsets = self.start is not None or self.end is not None
        if (self.text is None) == (not by_offsets):
            raise ValueError(f"segment {self.id!r}: give either `text` or `start` and `end`")
        if self.text is not None and not self.text.strip():
            raise ValueError(f"segment {self.id!r}: the passage is empty")
        if by_offsets and (self.start is None or self.end is None or self.end <= self.start):
            raise ValueError(f"segment {self.id!r}: needs both `start` and `end`, with `end` > `start`")
        return self

    def to_spec(self) -> dict[str, object]:
        """The library's segment (``auditor.game.granularity.SegmentSpec`` fields)."""
        return self.model_dump(exclude_none=True)


def check_segments(segments: list[SegmentHint], granularity: str | None, spans: list[PlayerHint]) -> None:
    """What the schema alone cannot say: unique ids, and segments only with a granularity that plays
    them (``segments`` or ``auto``), never together with word spans."""
    ids = [s.id for s in segments]
    for sid in ids:
        if ids.count(sid) > 1:
            raise ValueError(f"segments: duplicate id {sid!r}")
    if granularity == "segments" and not segments:
        raise ValueError("granularity 'segments' needs `segments`")
    if segments and granularity not in (None, "segments", "auto"):
        raise ValueError(f"segments are given, but granularity is {granularity!r}; use 'segments' or 'auto'")
    if segments and spans:
        raise ValueError("give `spans` (word players) or `segments` (coarse players), not both")


class AuditJob(BaseModel):
    """One audit to run: the prompt (or chat messages) and the answer the served model gave."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=256)
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    answer: str | None = None
    answer_ids: list[int] | None = None
    spans: list[PlayerHint] = Field(default_factory=list)
    granularity: Granularity | None = None  # None: the auditor's setting
    segments: list[SegmentHint] = Field(default_factory=list, max_length=MAX_SEGMENTS)
    request_id_replaced: StrictBool = False  # the caller's id was unsafe to echo and was replaced
    # unix time after which the auditor refuses the hand-off ("expired"): the LLM side waits longer
    # than this, so a job it counts as a failed hand-off can never also be accepted (issue 17)
    handoff_deadline: float | None = None
    sampling_reason: str = "forced"
    sampling_probability: float | None = Field(None, ge=0.0, le=1.0)
    submitted_at: datetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _has_input(self) -> AuditJob:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("an audit needs exactly one of `prompt` and `messages`")
        if self.messages is not None and not self.messages:
            raise ValueError("`messages` must not be empty")
        check_segments(self.segments, self.granularity, self.spans)
        if self.prompt is not None:  # chat segments are located at run time (they may sit in any message)
            for seg in self.segments:
                if seg.text is not None and seg.text not in self.prompt:
                    raise ValueError(f"segments[{seg.id!r}].text: not found in the prompt")
                if seg.end is not None and seg.end > len(self.prompt):
                    raise ValueError(f"segments[{seg.id!r}]: range {seg.start}:{seg.end} runs past the end of "
                                     f"the prompt ({len(self.prompt)} chars)")
        if self.spans and self.prompt is not None:
            for i, span in enumerate(self.spans):
                try:
                    span.locate(self.prompt)
                except ValueError as e:
                    raise ValueError(f"spans[{i}]: {e}") from None
        return self

    @property
    def labelled(self) -> bool:
        return any(s.label != "unlabelled" for s in [*self.spans, *self.segments])
