"""Coarse players: sentences, chat messages, passages and caller segments of a long prompt.

Why a module of its own: a 2,000-token RAG prompt has hundreds of words, but the exact game has
2^n states, so n must stay small (science.md: n <= 12 coarse players, the most salient refined into
words). People also reason in passages and turns ("the answer came from doc-3"), not in the 16
words an automatic selection happens to pick. This module turns the rendered prompt into such
units; each is one player, i.e. one contiguous token span that is masked as a whole (all its tokens
replaced by the baseline, positions kept), so a 300-token passage is one level of the mask trie.

Granularities (the one list, :data:`GRANULARITIES`, shared by the HTTP schema, the CLI and the
Python API):

* ``words``: content words, the most effective kept (``auditor.game.scoring.select_players``).
* ``sentences``: sentences of the player regions (the prompt, or the user messages of a chat).
* ``messages``: every non-empty chat turn (system, user, assistant, tool); the system prompt is one
  player, or split into its sentences with ``system="sentences"``. A plain prompt has no turns: its
  paragraphs (blank-line separated) are played instead.
* ``segments``: caller-given spans with an id and a label (retrieved passages, tool outputs).
* ``auto``: segments when given; else, for a prompt of at least :data:`AUTO_COARSE_MIN_TOKENS`
  tokens, messages (chat) or paragraphs (plain), falling back to sentences when there is only one;
  words for short prompts (the behaviour before granularities existed).

When a split yields more than ``max_coarse`` units, adjacent units are merged into ``max_coarse``
contiguous groups of nearly equal count (a sentence is never cut). Caller segments are never merged:
more segments than the limit is an error naming the limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from auditor.game.players import (
    LABELS,
    Label,
    NoPlayersError,
    Player,
    PlayerError,
    RenderedPrompt,
    _token_span,
    locate_messages,
)

GRANULARITIES: tuple[str, ...] = ("words", "sentences", "messages", "segments", "auto")
COARSE: tuple[str, ...] = ("sentences", "messages", "segments", "paragraphs")
MAX_COARSE_PLAYERS = 12
"""Coarse games stay at n <= 12 (4,096 states): the LP solves in seconds and refinement can follow."""
AUTO_COARSE_MIN_TOKENS = 128
"""``auto`` plays passages or messages from this many prompt tokens on, words below it."""

_SENTENCE_RE = re.compile(r"\S(?:[^.!?\n]|[.!?](?=\S))*[.!?]*")
_PARAGRAPH_RE = re.compile(r"\S(?:.(?!\n[ \t]*\n))*\S?", re.DOTALL)
_SEGMENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")


@dataclass(frozen=True)
class SegmentSpec:
    """A caller-given coarse player: ``text`` (an exact substring of the prompt, first occurrence)
    or ``start``/``end`` character offsets (into the plain prompt, or the last user message of a
    chat), with an ``id`` that names it in errors, records and reports, and a ``label``."""

    id: str
    text: str | None = None
    start: int | None = None
    end: int | None = None
    label: Label = "unlabelled"

    def __post_init__(self) -> None:
        where = f"segments[{self.id!r}]"
        if not isinstance(self.id, str) or not _SEGMENT_ID_RE.match(self.id):
            raise PlayerError(f"segments: bad id {self.id!r}: use 1-64 letters, digits, '_', '.', ':' or '-'")
        if self.label not in LABELS:
            raise PlayerError(f"{where}.label: unknown label {self.label!r}; use one of {LABELS}")
        by_offsets = self.start is not None or self.end is not None
        if (self.text is not None) == by_offsets:
            raise PlayerError(f"{where}: give either text or start and end (exactly one)")
        if self.text is not None and not self.text.strip():
            raise PlayerError(f"{where}.text: the passage is empty")
        if by_offsets and (self.start is None or self.end is None or not 0 <= self.start < self.end):
            raise PlayerError(f"{where}: bad character range start={self.start} end={self.end}: need 0 <= start < end")

    @classmethod
    def coerce(cls, spec: SegmentSpec | Mapping[str, Any]) -> SegmentSpec:
        if isinstance(spec, SegmentSpec):
            return spec
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"id", "text", "start", "end", "label"}
            if unknown:
                raise PlayerError(f"segments[{spec.get('id')!r}]: unknown field(s) {sorted(unknown)}")
            if "id" not in spec:
                raise PlayerError("segments: every segment needs an id")
            return cls(**dict(spec))
        raise PlayerError(f"segments: cannot read a segment from {spec!r}")


def check_granularity(granularity: str) -> str:
    if granularity not in GRANULARITIES:
        raise PlayerError(f"granularity: unknown granularity {granularity!r}; use one of {GRANULARITIES}")
    return granularity


def resolve_auto(rendered: RenderedPrompt, segments: Sequence[Any] | None, n_messages: int) -> str:
    """What ``auto`` plays for this prompt (see the module docstring)."""
    if segments:
        return "segments"
    if len(rendered) < AUTO_COARSE_MIN_TOKENS:
        return "words"
    if rendered.is_chat:
        return "messages" if n_messages >= 2 else "sentences"
    return "paragraphs" if len(_units(_PARAGRAPH_RE, rendered.text, rendered.regions)) >= 2 else "sentences"


def _units(pattern: re.Pattern[str], text: str, regions: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for lo, hi in regions:
        for m in pattern.finditer(text, lo, hi):
            start, end = m.start(), m.end()
            while end > start and text[end - 1].isspace():
                end -= 1
            if re.search(r"\w", text[start:end]):
                out.append((start, end))
    return out


def _group(units: list[tuple[int, int, str]], limit: int) -> list[tuple[int, int, str]]:
    """At most ``limit`` contiguous groups of nearly equal unit count (ids joined with '+')."""
    m = len(units)
    if m <= limit:
        return units
    groups = []
    for g in range(limit):
        part = units[g * m // limit:(g + 1) * m // limit]
        groups.append((part[0][0], part[-1][1], f"{part[0][2]}+{part[-1][2]}" if len(part) > 1 else part[0][2]))
    return groups


def coarse_players(
    rendered: RenderedPrompt,
    granularity: str,
    *,
    messages: Sequence[Mapping[str, Any]] | None = None,
    segments: Sequence[SegmentSpec | Mapping[str, Any]] | None = None,
    system: str = "one",
    max_players: int = MAX_COARSE_PLAYERS,
) -> list[Player]:
    """Coarse players of ``granularity`` ("sentences", "messages", "paragraphs", "segments"),
    indexed in position order (segments: in the caller's order)."""
    if granularity == "segments":
        return segment_players(rendered, segments or [], messages=messages, max_players=max_players)
    if segments:
        raise PlayerError(f"segments: given, but the granularity is {granularity!r}; use 'segments' or 'auto'")
    if system not in ("one", "sentences"):
        raise PlayerError(f"system: use 'one' or 'sentences', got {system!r}")
    units: list[tuple[int, int, str]]
    if granularity == "sentences":
        units = [(a, b, f"s{i}") for i, (a, b) in enumerate(_units(_SENTENCE_RE, rendered.text, rendered.regions))]
    elif granularity == "paragraphs" or (granularity == "messages" and not rendered.is_chat):
        units = [(a, b, f"p{i}") for i, (a, b) in enumerate(_units(_PARAGRAPH_RE, rendered.text, rendered.regions))]
    elif granularity == "messages":
        units = []
        for i, (role, a, b) in enumerate(locate_messages(rendered.text, messages or [])):
            if role == "system" and system == "sentences":
                parts = _units(_SENTENCE_RE, rendered.text, [(a, b)])
                units += [(x, y, f"m{i}:system:s{j}") for j, (x, y) in enumerate(parts)]
            else:
                units.append((a, b, f"m{i}:{role}"))
    else:
        raise PlayerError(f"granularity: {granularity!r} is not a coarse granularity; use one of {COARSE}")
    if not units:
        raise NoPlayersError(f"granularity {granularity!r}: the prompt has no {granularity} to play")
    return _to_players(rendered, _group(units, max_players), {})


def segment_players(
    rendered: RenderedPrompt,
    segments: Sequence[SegmentSpec | Mapping[str, Any]],
    *,
    messages: Sequence[Mapping[str, Any]] | None = None,
    max_players: int = MAX_COARSE_PLAYERS,
) -> list[Player]:
    """Players from caller segments; every error names the segment id. Text is searched in every
    message content (a retrieved passage often sits in the system prompt), offsets index the plain
    prompt or the last user message."""
    specs = [SegmentSpec.coerce(s) for s in segments]
    if not specs:
        raise PlayerError("segments: granularity 'segments' needs at least one segment")
    if len(specs) > max_players:
        raise PlayerError(f"segments: {len(specs)} segments exceed the limit of {max_players} coarse players")
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):
        raise PlayerError(f"segments: duplicate id {next(i for i in ids if ids.count(i) > 1)!r}")
    if rendered.is_chat:
        regions = [(a, b) for _, a, b in locate_messages(rendered.text, messages or [])] or list(rendered.regions)
    else:
        regions = list(rendered.regions)
    units: list[tuple[int, int, str]] = []
    labels: dict[str, Label] = {}
    for spec in specs:
        where = f"segments[{spec.id!r}]"
        if spec.text is not None:
            at = next((p for lo, hi in regions if (p := rendered.text.find(spec.text, lo, hi)) >= 0), -1)
            if at < 0:
                raise PlayerError(f"{where}.text: not found in the prompt")
            start, end = at, at + len(spec.text)
        else:
            origin, limit = rendered.last_user
            assert spec.start is not None and spec.end is not None
            start, end = origin + spec.start, origin + spec.end
            if end > limit:
                raise PlayerError(f"{where}: range {spec.start}:{spec.end} runs past the end of the prompt "
                                  f"({limit - origin} chars)")
            if not rendered.text[start:end].strip():
                raise PlayerError(f"{where}: the passage is empty (only whitespace)")
        units.append((start, end, spec.id))
        labels[spec.id] = spec.label
    ordered = sorted(units)
    for (a0, a1, a), (b0, _, b) in zip(ordered, ordered[1:]):
        if b0 < a1:
            raise PlayerError(f"segments[{a!r}] and segments[{b!r}] overlap ({a0}:{a1} and {b0}:...)")
    players = _to_players(rendered, units, labels, keep_order=True)
    ranked = sorted(players, key=lambda p: p.token_start)
    for a_p, b_p in zip(ranked, ranked[1:]):
        if b_p.token_start < a_p.token_end:
            raise PlayerError(f"segments[{a_p.segment_id!r}] and segments[{b_p.segment_id!r}] share a token, "
                              "so they cannot be masked separately")
    return players


def _to_players(
    rendered: RenderedPrompt, units: Sequence[tuple[int, int, str]], labels: Mapping[str, Label],
    *, keep_order: bool = False,
) -> list[Player]:
    """Players from character units; units that share a token are merged (a token cannot be half
    masked), unless the caller gave them (``keep_order``: the caller's segments, checked by the caller)."""
    spans: list[tuple[int, int, int, int, str]] = []
    for start, end, uid in (units if keep_order else sorted(units)):
        tokens = _token_span(rendered, start, end)
        if tokens is None:
            raise PlayerError(f"segments[{uid!r}]: covers no token of the prompt")
        if not keep_order and spans and tokens[0] < spans[-1][3]:
            s0, _, t0, t1, pid = spans.pop()
            spans.append((s0, end, t0, max(t1, tokens[1]), f"{pid}+{uid}"))
            continue
        spans.append((start, end, tokens[0], tokens[1], uid))
    return [
        Player(i, rendered.text[a:b], a, b, t0, t1, labels.get(uid, "unlabelled"), None, uid)
        for i, (a, b, t0, t1, uid) in enumerate(spans)
    ]


def within(rendered: RenderedPrompt, players: Sequence[Player]) -> RenderedPrompt:
    """The same prompt with player regions cut to ``players``' character spans: word players of a
    refinement game come from inside the refined coarse players only."""
    from dataclasses import replace

    return replace(rendered, regions=tuple(sorted((p.char_start, p.char_end) for p in players)))
