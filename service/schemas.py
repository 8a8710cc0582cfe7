"""Request and response models of the HTTP endpoints (pydantic v2).

Native endpoints (``/generate``, ``/audit``, ``/audits``) and the OpenAI-compatible ones
(``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``). The OpenAI request models accept and
ignore fields they do not use (the official client sends some), and carry one extension field,
``audit`` (send it with the client's ``extra_body={"audit": {...}}``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator, model_validator

from auditor import AuditJob, ChatMessage, PlayerHint, SegmentHint
from auditor.runtime.jobs import MAX_SEGMENTS, Granularity, check_segments

__all__ = [
    "AuditHints",
    "GenerateResponse",
    "SubmitResponse",
    "AuditRequest",
    "AuditListResponse",
    "ChatCompletionRequest",
    "CompletionRequest",
    "ErrorBody",
    "AuditJob",
    "ChatMessage",
    "PlayerHint",
    "SegmentHint",
    "error_field",
]


class AuditHints(BaseModel):
    """Optional audit hints of a request.

    ``force``: audit this request whatever the sampling rate (counted as ``forced``).
    ``flag``: the caller marks the request as risky (boosted sampling, reason ``caller_flag``).
    ``spans``: the players of the audit, with labels (relevant / irrelevant / forbidden /
    unlabelled); a request with labelled spans is boosted (reason ``labelled``). Spans must lie in
    the prompt (for chat requests: in the user messages; offsets index the last user message).
    ``granularity``: words | sentences | messages | segments | auto (unset: the auditor's setting).
    ``segments``: coarse players with an ``id`` (retrieved passages, tool outputs), ``text`` or
    ``start``/``end``, and a ``label``; at most 12, not overlapping, each found in the prompt."""

    model_config = ConfigDict(extra="forbid")

    force: StrictBool = False
    flag: StrictBool = False
    spans: list[PlayerHint] = Field(default_factory=list, max_length=16)
    granularity: Granularity | None = None
    segments: list[SegmentHint] = Field(default_factory=list, max_length=MAX_SEGMENTS)

    @model_validator(mode="after")
    def _segments(self) -> AuditHints:
        check_segments(self.segments, self.granularity, self.spans)
        return self

    @property
    def labelled(self) -> bool:
        return any(s.label != "unlabelled" for s in [*self.spans, *self.segments])


class GenerateResponse(BaseModel):
    request_id: str
    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]


class SubmitResponse(BaseModel):
    accepted: bool
    reason: Literal["queued", "queue_full", "stopped", "disabled", "expired"]
    queue_depth: int = 0


class AuditRequest(BaseModel):
    """``POST /audit``: audit one prompt now. Without ``answer`` the auditor's model copy generates
    the answer greedily (``answer_tokens`` tokens at most)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str | None = Field(None, min_length=1, max_length=256)
    prompt: str | None = Field(None, min_length=1)
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    answer: str | None = None
    answer_ids: list[StrictInt] | None = Field(None, max_length=4096)
    spans: list[PlayerHint] = Field(default_factory=list, max_length=16)
    granularity: Granularity | None = None
    segments: list[SegmentHint] = Field(default_factory=list, max_length=MAX_SEGMENTS)

    @model_validator(mode="after")
    def _one_input(self) -> AuditRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of `prompt` and `messages`")
        return self


class AuditListResponse(BaseModel):
    audits: list[dict[str, Any]]
    next_cursor: str | None = None


# ------------------------------------------------------------------------------------------------
# OpenAI-compatible
# ------------------------------------------------------------------------------------------------
class _ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_ContentPart] | None = None

    def text(self, index: int) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(f"messages[{index}].content: only text parts are supported, got {part.type!r}")
            parts.append(part.text)
        return "".join(parts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool = False


class _OpenAICommon(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    # strict types: "3" or true for a number is a client bug, answered 400 naming the field
    temperature: StrictFloat | None = Field(None, ge=0.0, le=2.0)
    top_p: StrictFloat | None = Field(None, gt=0.0, le=1.0)
    n: StrictInt = Field(1, ge=1, le=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: StrictInt | None = Field(None, ge=-(2**63), le=2**63 - 1)
    user: str | None = None
    audit: AuditHints | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else list(v)
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return [s for s in stops if s]


class ChatCompletionRequest(_OpenAICommon):
    messages: list[OpenAIMessage] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_OpenAICommon):
    prompt: str | list[str]
    max_tokens: StrictInt | None = Field(16, ge=1)  # the OpenAI default
    echo: StrictBool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str:
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("exactly one prompt per request is supported")
            v = v[0]
        if not v:
            raise ValueError("must be a non-empty string")
        return v


class ErrorBody(BaseModel):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None


def error_field(errors: list[dict[str, Any]]) -> str:
    """The dotted field path of the first pydantic error (``messages.0.content``)."""
    if not errors:
        return ""
    loc = [str(x) for x in errors[0].get("loc", ()) if x not in ("body",)]
    # drop union-branch markers such as 'str' / 'list[...]' that pydantic adds to locations
    loc = [x for x in loc if not (x in ("str", "int", "float", "bool") or x.startswith(("list[", "function-")))]
    return ".".join(loc)


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One line naming every invalid field: ``max_new_tokens: Input should be greater than 0``."""
    parts = []
    for e in errors[:5]:
        loc = error_field([e]) or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)
