"""auditor.game.players: words from the fast tokenizer's offsets, caller spans, chat rendering, errors.

The oracle for every token span is the tokenizer's own offset mapping read back independently:
the tokens of a player's span, decoded, must spell the player's text (plus at most attached
punctuation/space), and no token outside the span may overlap its characters.
"""

from __future__ import annotations

import pytest

from auditor.game.players import (
    DEFAULT_MAX_PLAYERS,
    STOP_WORDS,
    PlayerError,
    PlayerSpec,
    content_words,
    is_content_word,
    players_from_specs,
    random_players,
    render_prompt,
    split_words,
)
from tests.tiny_models import build_tokenizer


@pytest.fixture(scope="module", params=["bytelevel", "metaspace"])
def tok(request):
    return build_tokenizer(request.param)


def _check_span(rendered, p) -> None:
    """Independent check of a player's token span against the raw offsets."""
    offsets = rendered.offsets
    inside = offsets[p.token_start : p.token_end]
    # every non-space character of the player is covered by a token of the span
    covered = set()
    for a, b in inside:
        covered.update(range(a, b))
    needed = {i for i in range(p.char_start, p.char_end) if not rendered.text[i].isspace()}
    assert needed <= covered
    # no token outside the span touches the player's characters
    for i, (a, b) in enumerate(offsets):
        if i < p.token_start or i >= p.token_end:
            assert b <= p.char_start or a >= p.char_end or a == b, (i, (a, b), p)
    assert rendered.text[p.char_start : p.char_end] == p.text


def test_multi_token_word_gets_all_its_tokens(tok):
    r = render_prompt(tok, prompt="The defendant Xylophonist stole a bicycle.")
    words = split_words(r)
    word = next(w for w in words if w.text == "Xylophonist")
    # an unseen word must split into several tokens with this small vocabulary
    assert word.token_end - word.token_start > 1
    decoded = "".join(tok.convert_ids_to_tokens(list(r.input_ids[word.token_start : word.token_end])))
    assert "Xylophonist" in decoded.replace("Ġ", "").replace("▁", "")


def test_repeated_words_get_distinct_spans(tok):
    text = "theft and theft and theft"
    r = render_prompt(tok, prompt=text)
    spans = [(w.token_start, w.token_end) for w in split_words(r) if w.text == "theft"]
    assert len(spans) == 3 and len(set(spans)) == 3
    specs = [PlayerSpec(text="theft", occurrence=k) for k in range(3)]
    players = players_from_specs(r, specs)
    assert [p.char_start for p in players] == [0, 10, 20]
    for p in players:
        _check_span(r, p)


def test_punctuation_attached_to_words_stays_background(tok):
    text = "Alice, Bob; and (Carol)!"
    r = render_prompt(tok, prompt=text)
    words = [w.text for w in split_words(r)]
    assert words == ["Alice", "Bob", "and", "Carol"]
    for w in split_words(r):
        assert not any(ch in w.text for ch in ",;()!")


def test_non_ascii_words(tok):
    text = "Zürich, Genève and São Paulo; 日本 too"
    r = render_prompt(tok, prompt=text)
    words = split_words(r)
    assert [w.text for w in words] == ["Zürich", "Genève", "and", "São", "Paulo", "日本", "too"]
    players = players_from_specs(r, ["Zürich", "São Paulo", "日本"])
    for p in players:
        _check_span(r, p)
    assert [p.text for p in players] == ["Zürich", "São Paulo", "日本"]


def test_char_offsets_and_labels(tok):
    text = "The defendant Alice stole a bicycle."
    r = render_prompt(tok, prompt=text)
    players = players_from_specs(
        r,
        [
            PlayerSpec(start=14, end=19, label="forbidden", group="person"),
            {"text": "bicycle", "label": "relevant"},
            (20, 25),
        ],
    )
    assert [p.text for p in players] == ["Alice", "bicycle", "stole"]
    assert [p.index for p in players] == [0, 1, 2]  # caller order, not position order
    assert players[0].label == "forbidden" and players[0].group == "person"
    assert players[1].label == "relevant" and players[2].label == "unlabelled"
    for p in players:
        _check_span(r, p)


def test_content_word_rules():
    assert not is_content_word("The") and not is_content_word("of")
    assert is_content_word("theft") and is_content_word("COVID-19") and is_content_word("1990s")
    assert is_content_word("2024") and is_content_word("3")  # numbers can decide an answer (issue 19)
    assert "the" in STOP_WORDS and "theft" not in STOP_WORDS


def test_content_words_keep_numbers_and_drop_stopwords_and_punctuation(tok):
    r = render_prompt(tok, prompt="In 2024 the defendant stole 3 bicycles, twice!")
    assert [w.text for w in content_words(r)] == ["2024", "defendant", "stole", "3", "bicycles", "twice"]


def test_random_players_are_seeded_and_sorted(tok):
    r = render_prompt(tok, prompt="Alice stole a red bicycle from the old shop near the river bank today")
    a = random_players(r, 4, seed=3)
    b = random_players(r, 4, seed=3)
    assert [p.text for p in a] == [p.text for p in b]
    assert [p.token_start for p in a] == sorted(p.token_start for p in a)
    assert [p.index for p in a] == [0, 1, 2, 3]
    draws = {tuple(p.text for p in random_players(r, 4, seed=s)) for s in range(10)}
    assert len(draws) > 1  # the seed matters
    assert len(random_players(r, 16)) == len(content_words(r)) < 16  # all when fewer than n


def test_chat_players_only_in_user_content(tok):
    messages = [
        {"role": "system", "content": "You judge theft cases."},
        {"role": "user", "content": "Alice stole a bicycle. Was it theft?"},
    ]
    r = render_prompt(tok, messages=messages)
    assert r.is_chat and r.text.startswith("<s><|system|>")
    (lo, hi), = r.regions
    assert r.text[lo:hi] == messages[1]["content"]
    # "theft" appears in the system message first; the span must resolve inside the user message
    (p,) = players_from_specs(r, ["theft"])
    assert lo <= p.char_start < p.char_end <= hi
    _check_span(r, p)
    # char offsets are relative to the last user message
    (q,) = players_from_specs(r, [(0, 5)])
    assert q.text == "Alice"
    # words come only from the user message
    assert "judge" not in [w.text for w in split_words(r)]
    # the chat markers are single special tokens, never inside a player
    marker = tok.convert_tokens_to_ids("<|user|>")
    assert marker in r.input_ids
    assert r.input_ids[p.token_start : p.token_end].count(marker) == 0


def test_chat_span_outside_user_content_is_rejected(tok):
    messages = [
        {"role": "system", "content": "You judge cases."},
        {"role": "user", "content": "Alice stole a bicycle."},
    ]
    r = render_prompt(tok, messages=messages)
    with pytest.raises(PlayerError, match="not found"):
        players_from_specs(r, ["judge"])


@pytest.mark.parametrize(
    ("prompt", "specs", "message"),
    [
        ("Alice stole a bicycle.", ["Bob"], "not found"),
        ("Alice stole a bicycle.", [PlayerSpec(text="Alice", occurrence=1)], "occurs 1 time"),
        ("Alice stole a bicycle.", ["Alice stole", "stole a"], "overlapping"),
        ("Alice stole a bicycle.", [(0, 99)], "runs past the end"),
        ("Alice stole a bicycle.", [(5, 6)], "whitespace"),
    ],
)
def test_player_errors(tok, prompt, specs, message):
    r = render_prompt(tok, prompt=prompt)
    with pytest.raises(PlayerError, match=message):
        players_from_specs(r, specs)


def test_cap_and_empty_prompt(tok):
    r = render_prompt(tok, prompt=" ".join(f"w{i}" for i in range(20)))
    specs = [f"w{i}" for i in range(DEFAULT_MAX_PLAYERS + 1)]
    with pytest.raises(PlayerError, match="exceed the cap of 16"):
        players_from_specs(r, specs)
    assert len(players_from_specs(r, specs, max_players=20)) == 17
    with pytest.raises(PlayerError, match="empty prompt"):
        render_prompt(tok, prompt="   ")
    with pytest.raises(PlayerError, match="empty prompt"):
        render_prompt(tok, messages=[])
    with pytest.raises(PlayerError, match="exactly one"):
        render_prompt(tok, prompt="a", messages=[{"role": "user", "content": "a"}])
    with pytest.raises(PlayerError):
        PlayerSpec(text="a", start=0, end=1)
    with pytest.raises(PlayerError, match="label"):
        PlayerSpec(text="a", label="secret")  # type: ignore[arg-type]


def test_span_sharing_a_token_is_rejected():
    # with the byte-level tokenizer "theft" is one token: two halves of it cannot be separate players
    tok = build_tokenizer("bytelevel")
    r = render_prompt(tok, prompt="charged with theft")
    (w,) = [w for w in split_words(r) if w.text == "theft"]
    assert w.token_end - w.token_start == 1
    with pytest.raises(PlayerError, match="share a token"):
        players_from_specs(r, [(13, 15), (15, 18)])
