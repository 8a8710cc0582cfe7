"""Players of the causal-LM game: which contiguous token spans of the prompt are switched on and off.

Why a module of its own: everything downstream (the masking engine, labels for misattribution,
names in reports) depends on an exact, reproducible map between words of the text and token spans
of the *rendered* prompt. That map is built from the fast tokenizer's offset mapping, never by
searching token ids (the same word tokenizes differently at the start of a text, after a space or
inside a chat template).

Definitions (science.md section 1): a player is a contiguous token span; every other prompt token
is background and always present. For chat requests the prompt is rendered with the tokenizer's
chat template, and players may only lie inside user-message content.

Word segmentation. A *word* is a maximal run of Unicode word characters, optionally joined by an
apostrophe or hyphen (``don't``, ``e-mail``); everything else (spaces, punctuation) is background.
A word maps to every token whose character offsets overlap it, so punctuation that the tokenizer
glues onto a word ends up inside that word's token span. Words that share a token are merged into
one unit, since a token cannot be half masked.

Content words (the candidates of the ``words``/``auto`` and ``random`` modes) are names, nouns,
numbers and negations: everything but the stop-words of :data:`STOP_WORDS` (case-insensitive) and
pure underscores, and always the negations of :data:`NEGATIONS` ("not", "no", "never", "didn't"). A
negation flips a legal answer and a number (an amount, a date, an age) can decide one, so both are
exactly the kind of word an audit must be able to play.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Label = Literal["relevant", "irrelevant", "forbidden", "unlabelled"]
LABELS: tuple[str, ...] = ("relevant", "irrelevant", "forbidden", "unlabelled")

DEFAULT_MAX_PLAYERS = 16
"""Hard cap on n: the game has 2^n states, so 16 players already mean 65,536 masked forwards."""

# English function words (articles, pronouns, auxiliaries, prepositions, conjunctions, common
# adverbs). Their masking effects are large but uninformative (they carry grammar, not content),
# which is why the reference code and this project exclude them from automatic selection.
STOP_WORDS: frozenset[str] = frozenset(
    """
    a an the this that these those there here
    i me my mine myself we us our ours ourselves you your yours yourself yourselves
    he him his himself she her hers herself it its itself they them their theirs themselves
    who whom whose which what when where why how
    am is are was were be been being have has had having do does did doing done
    will would shall should can could may might must ought
    and or but nor so yet if then else than because as while until although though
    of at by for with about against between into through during before after above below
    to from up down in out on off over under again further once
    all any both each few more most other some such no not only own same too very just also
    s t d ll m o re ve y don't doesn't didn't isn't aren't wasn't weren't won't can't
    """.split()
)

NEGATIONS: frozenset[str] = frozenset(
    "no not nor never none nobody nothing neither without don't doesn't didn't isn't aren't wasn't weren't "
    "won't can't cannot couldn't shouldn't wouldn't hasn't haven't hadn't mustn't".split()
)

_WORD_RE = re.compile(r"[^\W_]+(?:[\'’\-][^\W_]+)*", re.UNICODE)
class PlayerError(ValueError):
    """Bad player input: the message names the span or the limit that was violated."""


class NoPlayersError(PlayerError):
    """The prompt has nothing to play: no content words (``"0"``, ``"?"``). Not a failure of the
    audit machinery: the runtime records such an audit as ``skipped``, not ``failed``."""


@dataclass(frozen=True)
class Player:
    """One player: a contiguous token span of the rendered prompt.

    ``char_start``/``char_end`` index the rendered prompt text (for a plain prompt, the prompt
    itself); ``token_start``/``token_end`` index its token ids (end exclusive).
    """

    index: int
    text: str
    char_start: int
    char_end: int
    token_start: int
    token_end: int
    label: Label = "unlabelled"
    group: str | None = None
    segment_id: str | None = None  # coarse players: the caller's segment id, or s3 / m2:user / p1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["segment_id"] is None:  # word players serialise (and hash) as before segments existed
            del data["segment_id"]
        return data

    @property
    def n_tokens(self) -> int:
        return self.token_end - self.token_start


@dataclass(frozen=True)
class PlayerSpec:
    """A caller-given player span.

    Either ``text`` (an exact substring; ``occurrence`` picks the k-th match, 0-based) or
    ``start``/``end`` character offsets. For a plain prompt the offsets index the prompt; for chat
    messages they index the content of the *last* user message (the request being answered), and a
    ``text`` is searched through all user messages in order.
    """

    text: str | None = None
    occurrence: int = 0
    start: int | None = None
    end: int | None = None
    label: Label = "unlabelled"
    group: str | None = None

    def __post_init__(self) -> None:
        by_text = self.text is not None
        by_offsets = self.start is not None or self.end is not None
        if by_text == by_offsets:
            raise PlayerError("a PlayerSpec needs either text or start/end character offsets (exactly one)")
        if by_text and not self.text:
            raise PlayerError("a PlayerSpec text must be non-empty")
        if by_offsets and (self.start is None or self.end is None or not 0 <= self.start < self.end):
            raise PlayerError(f"bad character offsets start={self.start} end={self.end}: need 0 <= start < end")
        if self.occurrence < 0:
            raise PlayerError(f"occurrence must be >= 0, got {self.occurrence}")
        if self.label not in LABELS:
            raise PlayerError(f"unknown label {self.label!r}; use one of {LABELS}")

    @classmethod
    def coerce(cls, spec: PlayerSpec | str | tuple[int, int] | Mapping[str, Any]) -> PlayerSpec:
        """Accept the forms a caller naturally writes: a spec, a substring, (start, end), or a dict."""
        if isinstance(spec, PlayerSpec):
            return spec
        if isinstance(spec, str):
            return cls(text=spec)
        if isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(x, int) for x in spec):
            return cls(start=spec[0], end=spec[1])
        if isinstance(spec, Mapping):
            return cls(**dict(spec))
        raise PlayerError(f"cannot read a player span from {spec!r}")


@dataclass(frozen=True)
class RenderedPrompt:
    """The exact token sequence the model sees before the answer, with its character map.

    ``regions`` are the character ranges of the text where players may lie: the whole prompt for a
    plain prompt, the user-message contents for a chat request. ``last_user`` is the region of the
    last user message (the origin of caller character offsets in chat mode).
    """

    text: str
    input_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    regions: tuple[tuple[int, int], ...]
    last_user: tuple[int, int]
    is_chat: bool

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class Word:
    """A word (or merged group of words sharing tokens) of the rendered prompt."""

    text: str
    char_start: int
    char_end: int
    token_start: int
    token_end: int
    is_content: bool


def render_prompt(
    tokenizer: Any,
    prompt: str | None = None,
    messages: Sequence[Mapping[str, Any]] | None = None,
) -> RenderedPrompt:
    """Render and tokenize a plain prompt or chat messages, keeping character offsets.

    A plain prompt is tokenized with the tokenizer's special tokens (e.g. BOS), as generation would.
    Chat messages go through ``apply_chat_template(..., add_generation_prompt=True)``; the rendered
    text is then tokenized without adding special tokens (the template already holds them).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise PlayerError("a fast tokenizer is required: players are located with its offset mapping")
    if (prompt is None) == (messages is None):
        raise PlayerError("give exactly one of prompt or messages")
    if messages is not None:
        if not messages:
            raise PlayerError("empty prompt: no chat messages")
        if getattr(tokenizer, "chat_template", None) is None:
            raise PlayerError("the tokenizer has no chat template; pass a plain prompt instead of messages")
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        regions, last_user = _locate_user_contents(text, messages)
        add_special = False
    else:
        if not prompt or not prompt.strip():
            raise PlayerError("empty prompt")
        text = prompt
        regions, last_user = ((0, len(text)),), (0, len(text))
        add_special = True
    enc = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
    ids = tuple(int(i) for i in enc["input_ids"])
    offsets = tuple((int(a), int(b)) for a, b in enc["offset_mapping"])
    if not ids:
        raise PlayerError("empty prompt: it tokenizes to no tokens")
    return RenderedPrompt(text, ids, offsets, regions, last_user, messages is not None)


def _locate_user_contents(
    text: str, messages: Sequence[Mapping[str, Any]]
) -> tuple[tuple[tuple[int, int], ...], tuple[int, int]]:
    """Find each message's content in the rendered text, in order; return the user ones' ranges.

    Searching in order (each search starting after the previous match) keeps a user message that
    repeats a system message's text from being matched inside the system message.
    """
    regions = [(a, b) for role, a, b in locate_messages(text, messages) if role == "user"]
    if not regions:
        raise PlayerError("no user message: players can only be placed in user content")
    return tuple(regions), regions[-1]


def locate_messages(text: str, messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, int, int]]:
    """``(role, start, end)`` of each non-empty message content in the rendered text, in order
    (the ``messages`` granularity plays them all, the system prompt included)."""
    cursor = 0
    found: list[tuple[str, int, int]] = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str):
            raise PlayerError(f"only text message contents are supported, got {type(content).__name__}")
        needle = content.strip()
        if not needle:
            if message.get("role") == "user":
                raise PlayerError("empty prompt: a user message has no content")
            continue
        at = text.find(needle, cursor)
        if at < 0:
            raise PlayerError(
                f"could not locate the {message.get('role')} message in the rendered chat template"
            )
        cursor = at + len(needle)
        found.append((str(message.get("role")), at, cursor))
    return found


def _token_span(rendered: RenderedPrompt, char_start: int, char_end: int) -> tuple[int, int] | None:
    """The contiguous token span covering every token that overlaps [char_start, char_end)."""
    hits = [i for i, (a, b) in enumerate(rendered.offsets) if b > a and a < char_end and b > char_start]
    if not hits:
        return None
    return hits[0], hits[-1] + 1


def is_content_word(word: str) -> bool:
    """True for words eligible for auto/random selection (see the module docstring)."""
    lower = word.lower().replace("’", "'")
    return lower in NEGATIONS or lower not in STOP_WORDS


def split_words(rendered: RenderedPrompt) -> list[Word]:
    """All words inside the player regions, in position order, merged where they share a token."""
    raw: list[Word] = []
    for lo, hi in rendered.regions:
        for match in _WORD_RE.finditer(rendered.text, lo, hi):
            span = _token_span(rendered, match.start(), match.end())
            if span is None:
                continue
            raw.append(Word(match.group(), match.start(), match.end(), span[0], span[1], is_content_word(match.group())))
    merged: list[Word] = []
    for word in raw:
        if merged and word.token_start < merged[-1].token_end:
            prev = merged.pop()
            start, end = prev.char_start, max(prev.char_end, word.char_end)
            word = Word(
                rendered.text[start:end], start, end, prev.token_start, max(prev.token_end, word.token_end),
                prev.is_content or word.is_content,
            )
        merged.append(word)
    return merged


def content_words(rendered: RenderedPrompt) -> list[Word]:
    return [w for w in split_words(rendered) if w.is_content]


def check_count(n: int, max_players: int = DEFAULT_MAX_PLAYERS) -> None:
    if n < 1:
        raise PlayerError(f"need at least one player, got n={n}")
    if n > max_players:
        raise PlayerError(
            f"{n} players exceed the cap of {max_players} (the game has 2^n states); "
            "raise max_players deliberately if you really need more"
        )


def words_to_players(words: Sequence[Word]) -> list[Player]:
    """Players from words, indexed in position order."""
    ordered = sorted(words, key=lambda w: w.token_start)
    return [
        Player(i, w.text, w.char_start, w.char_end, w.token_start, w.token_end) for i, w in enumerate(ordered)
    ]


def random_players(
    rendered: RenderedPrompt, n: int, *, seed: int = 0, max_players: int = DEFAULT_MAX_PLAYERS
) -> list[Player]:
    """n content words drawn uniformly without replacement with a seeded generator (all if fewer)."""
    check_count(n, max_players)
    candidates = content_words(rendered)
    if not candidates:
        raise NoPlayersError("the prompt has no content words to use as players")
    if len(candidates) > n:
        picks = random.Random(seed).sample(range(len(candidates)), n)
        candidates = [candidates[i] for i in sorted(picks)]
    return words_to_players(candidates)


def players_from_specs(
    rendered: RenderedPrompt,
    specs: Sequence[PlayerSpec | str | tuple[int, int] | Mapping[str, Any]],
    *,
    max_players: int = DEFAULT_MAX_PLAYERS,
) -> list[Player]:
    """Players from caller spans, indexed in the caller's order.

    A span that cuts through a token is widened to whole tokens for masking (the token span), while
    ``text``/``char_start``/``char_end`` keep the caller's exact span.
    """
    specs = [PlayerSpec.coerce(s) for s in specs]
    check_count(len(specs), max_players)
    players: list[Player] = []
    for index, spec in enumerate(specs):
        start, end = _resolve_span(rendered, spec)
        if not any(lo <= start and end <= hi for lo, hi in rendered.regions):
            where = "user message content" if rendered.is_chat else "prompt"
            raise PlayerError(f"span {rendered.text[start:end]!r} ({start}:{end}) is not inside the {where}")
        if not rendered.text[start:end].strip():
            raise PlayerError(f"span {start}:{end} holds only whitespace")
        tokens = _token_span(rendered, start, end)
        if tokens is None:
            raise PlayerError(f"span {rendered.text[start:end]!r} ({start}:{end}) covers no token")
        players.append(Player(index, rendered.text[start:end], start, end, tokens[0], tokens[1], spec.label, spec.group))
    ordered = sorted(players, key=lambda p: p.char_start)
    for a, b in zip(ordered, ordered[1:]):
        if b.char_start < a.char_end:
            raise PlayerError(f"overlapping spans: {a.text!r} ({a.char_start}:{a.char_end}) and "
                              f"{b.text!r} ({b.char_start}:{b.char_end})")
        if b.token_start < a.token_end:
            raise PlayerError(f"spans {a.text!r} and {b.text!r} share a token, so they cannot be masked separately")
    return players


def _resolve_span(rendered: RenderedPrompt, spec: PlayerSpec) -> tuple[int, int]:
    if spec.text is None:
        assert spec.start is not None and spec.end is not None
        origin, limit = rendered.last_user
        start, end = origin + spec.start, origin + spec.end
        if end > limit:
            what = "the last user message" if rendered.is_chat else "the prompt"
            raise PlayerError(f"span {spec.start}:{spec.end} runs past the end of {what} ({limit - origin} chars)")
        return start, end
    seen = 0
    for lo, hi in rendered.regions:
        at = rendered.text.find(spec.text, lo, hi)
        while at >= 0:
            if seen == spec.occurrence:
                return at, at + len(spec.text)
            seen += 1
            at = rendered.text.find(spec.text, at + 1, hi)
    where = "user messages" if rendered.is_chat else "prompt"
    if seen == 0:
        raise PlayerError(f"span {spec.text!r} not found in the {where}")
    raise PlayerError(f"span {spec.text!r} occurs {seen} time(s) in the {where}; occurrence {spec.occurrence} does not exist")
