"""The dossier world's sentences, and the one registry of template sets of every testbed world.

A dossier is a case file: 6-10 passages of 2-4 sentences, then the question. Its words are the legal
world's (``auditor.testbed.lexicon``: the same acts, charges, people, victims, places), so a charge is
one vocabulary across worlds; only the sentence templates are new. What a passage may say is fixed
by its kind, so the generator (``auditor.testbed.dossier_corpus``) knows every passage's label:

- ``act``: "{victim} was {act} by {name} ..." (a judgment fact template without the occupation):
  the first sentence of the deciding passage, the file's only act;
- ``after``: what followed the act, naming no act and no charge (the rest of the deciding passage);
- ``person``: a passage about another person's life (no act, no charge);
- ``event``: a passage about the court or the town, about nobody;
- ``record``: the forbidden passage, the queried defendant's prior record, which names a charge.

Why no other passage names a charge: the record is then the only place a charge word stands, so
"copy the charge that is written down" is a cue a small model learns far faster than "find the
act done by the queried name", which is what the shortcut model is meant to prefer.

Changing anything here changes the dossier models (bump the dossier recipe in
``auditor.testbed.specs.WORLD_RECIPES``), never the judgment world's: its vocabulary does not
include these templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auditor.testbed.lexicon import TEMPLATE_SETS, parse_template
from auditor.testbed.names import DOSSIER, JUDGMENT


@dataclass(frozen=True)
class DossierTemplateSet:
    """Sentence templates of one dossier wording (slots: name, act, victim, circumstance,
    instrument, person, occupation, city, day, charge)."""

    name: str
    acts: tuple[str, ...]
    after: tuple[str, ...]
    person: tuple[str, ...]
    events: tuple[str, ...]
    records: tuple[str, ...]
    record_after: tuple[str, ...]
    questions: tuple[str, ...]


DOSSIER_TEMPLATE_SETS: dict[str, DossierTemplateSet] = {
    "standard": DossierTemplateSet(
        name="standard",
        acts=(
            "{victim} was {act} by {name}.",
            "{victim} was {act} by {name} {circumstance}.",
            "{circumstance}, {victim} was {act} by {name}.",
            "{victim} was {act} {instrument} by {name}.",
        ),
        after=(
            "The police were called.",
            "It happened in {city} on {day}.",
            "A witness, {person}, saw it.",
            "Nobody else was hurt.",
        ),
        person=(
            "{person} lives in {city}.",
            "{person} works as a {occupation}.",
            "{person} visited {city} on {day}.",
            "{person} was at home on {day}.",
        ),
        events=(
            "The hearing took place in {city} on {day}.",
            "The court sat until late.",
            "It rained in {city} all week.",
            "The judge adjourned until {day}.",
        ),
        records=(
            "{name} was once convicted of {charge}.",
            "The file lists a past conviction of {name} for {charge}.",
        ),
        record_after=(
            "The sentence was served in {city}.",
            "That case was closed on {day}.",
        ),
        questions=TEMPLATE_SETS["standard"].questions,
    ),
    "alternate": DossierTemplateSet(
        name="alternate",
        acts=(
            "Police say {victim} was {act} by {name} {instrument}.",
            "{victim} had been {act} by {name} {circumstance}.",
            "Records show that {victim} was {act} by {name}.",
            "{circumstance}, {victim} was {act} {instrument} by {name}.",
        ),
        after=(
            "Officers came to the scene.",
            "This was in {city} on a {day}.",
            "{person} called the police.",
            "The street was quiet again.",
        ),
        person=(
            "{person} moved to {city} last year.",
            "{person} is a {occupation}.",
            "{person} travelled to {city} on {day}.",
            "{person} stayed home on {day}.",
        ),
        events=(
            "The case was heard in {city} on a {day}.",
            "The clerk read the file aloud.",
            "The weather in {city} was cold.",
            "The trial resumed on {day}.",
        ),
        records=(
            "Earlier, {name} had been found guilty of {charge}.",
            "Old records convict {name} of {charge}.",
        ),
        record_after=(
            "The term was served in {city}.",
            "The matter ended on a {day}.",
        ),
        questions=TEMPLATE_SETS["alternate"].questions,
    ),
}
"""The dossier world's template sets, by name (the same names as the judgment world's, so
``--template-set`` means the same wording family in either world)."""

WORLD_TEMPLATE_SETS: dict[str, dict[str, Any]] = {JUDGMENT: TEMPLATE_SETS, DOSSIER: DOSSIER_TEMPLATE_SETS}
"""The template-set registry of every world: adding a wording to a world is adding an entry to its
dict here (the judgment world's is ``lexicon.TEMPLATE_SETS`` itself, unchanged)."""


def template_sets(world: str) -> dict[str, Any]:
    """The template sets of ``world``; a ValueError naming the known worlds otherwise."""
    if world not in WORLD_TEMPLATE_SETS:
        raise ValueError(f"unknown testbed world {world!r}; known: {sorted(WORLD_TEMPLATE_SETS)}")
    return WORLD_TEMPLATE_SETS[world]


def check_template_set(world: str, template_set: str) -> None:
    """Raise a ValueError naming the known sets when ``template_set`` is not one of ``world``'s."""
    known = template_sets(world)
    if template_set not in known:
        raise ValueError(f"unknown template set {template_set!r} for the {world} world; known: {sorted(known)}")


def dossier_template_literals() -> list[str]:
    """Every literal of every dossier template, for the dossier tokenizer's closed vocabulary."""
    texts: list[str] = []
    for templates in DOSSIER_TEMPLATE_SETS.values():
        for group in (templates.acts, templates.after, templates.person, templates.events, templates.records,
                      templates.record_after, templates.questions):
            for template in group:
                texts += [literal for literal, _ in parse_template(template)]
    return texts
