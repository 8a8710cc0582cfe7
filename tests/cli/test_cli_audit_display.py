"""How `interaction-auditor audit` names players in its table: a word that is two players must say
which mention a term uses, or "slapped & Carla & Carla" reads as nonsense."""

from __future__ import annotations

from auditor.cli.audit_command import player_names


def test_repeated_words_carry_their_player_index_and_unique_words_do_not():
    texts = ["grocer", "Carla", "slapped", "Carla", "drunk"]
    assert player_names(texts) == ["grocer", "Carla#1", "slapped", "Carla#3", "drunk"]


def test_names_stay_unique_and_aligned_with_players():
    texts = ["a", "b", "a", "a", "c", "b"]
    names = player_names(texts)
    assert len(names) == len(texts) and len(set(names)) == len(texts)
    assert [name.split("#")[0] for name in names] == texts
