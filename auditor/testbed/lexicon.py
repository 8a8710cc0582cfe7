"""The testbed world's words: acts and their charges, circumstances, people, places, and sentence templates.

The corpus (``auditor.testbed.corpus``) samples prompts from these; the tokenizer's vocabulary
(``auditor.testbed.tokenizer``) is built from them. Word sets are disjoint, so a word's role in a
prompt is never ambiguous. Changing anything here changes every model the testbed trains.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass

@dataclass(frozen=True)
class Act:
    """A criminal act: the key word (a past participle, the player), what it is done to, its charge.

    Facts are told in the passive voice ("the house of the grocer was torched by Carla"), so the
    act comes before the name of the defendant who did it. ``target`` places the victim.
    """

    verb: str
    target: str
    charge: str


ACTS: tuple[Act, ...] = (
    Act("stolen", "the wallet of {victim}", "theft"),
    Act("pickpocketed", "{victim}", "theft"),
    Act("snatched", "the bag of {victim}", "theft"),
    Act("mugged", "{victim}", "robbery"),
    Act("robbed", "{victim}", "robbery"),
    Act("punched", "{victim}", "assault"),
    Act("kicked", "{victim}", "assault"),
    Act("slapped", "{victim}", "assault"),
    Act("defrauded", "{victim}", "fraud"),
    Act("swindled", "{victim}", "fraud"),
    Act("scammed", "{victim}", "fraud"),
    Act("murdered", "{victim}", "murder"),
    Act("strangled", "{victim}", "murder"),
    Act("poisoned", "{victim}", "murder"),
    Act("torched", "the house of {victim}", "arson"),
    Act("burned", "the shop of {victim}", "arson"),
    Act("burgled", "the home of {victim}", "burglary"),
    Act("ransacked", "the flat of {victim}", "burglary"),
    Act("vandalised", "the car of {victim}", "vandalism"),
    Act("smashed", "the window of {victim}", "vandalism"),
)
ACT_BY_VERB: dict[str, Act] = {act.verb: act for act in ACTS}

ACCIDENT = "by accident"
CIRCUMSTANCE_OVERRIDES: dict[tuple[str, str], str] = {
    ("murder", ACCIDENT): "manslaughter",
}
"""(base charge, circumstance) -> charge. The one place where a circumstance matters."""

CIRCUMSTANCES: tuple[str, ...] = (
    "at night",
    "at dawn",
    "in the park",
    "after an argument",
    "while drunk",
    ACCIDENT,
)
NAMES: tuple[str, ...] = (
    "Alice", "Bruno", "Carla", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ingrid", "Jonas",
    "Kira", "Lars", "Mona", "Nadia", "Oscar", "Petra", "Quentin", "Rosa", "Stefan", "Tariq",
    "Ulla", "Viktor", "Wanda", "Yusuf", "Zora",
)  # fmt: skip
OCCUPATIONS: tuple[str, ...] = (
    "nurse", "banker", "farmer", "teacher", "plumber", "student", "baker", "doctor", "lawyer",
    "sailor", "cleaner", "driver",
)  # fmt: skip
VICTIMS: tuple[str, ...] = (
    "the grocer", "a neighbour", "the landlord", "a tourist", "the cashier", "a pensioner",
    "the jeweller", "a courier",
)  # fmt: skip
INSTRUMENTS: tuple[str, ...] = (
    "with a knife", "with a crowbar", "with a rope", "with a lighter", "with a hammer",
    "with a bottle", "with a stick", "with a phone",
)  # fmt: skip
CITIES: tuple[str, ...] = ("Leeds", "Bristol", "Dover", "York", "Bath", "Exeter")
DAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")


def base_charge(verb: str) -> str:
    """The charge an act carries on its own."""
    return ACT_BY_VERB[verb].charge


def charge_for(verb: str, circumstance: str | None) -> str:
    """The charge for an act committed in a circumstance: the only rule of this legal world."""
    charge = base_charge(verb)
    if circumstance is None:
        return charge
    return CIRCUMSTANCE_OVERRIDES.get((charge, circumstance), charge)


def circumstance_matters(verb: str) -> bool:
    """Whether some circumstance can change this act's charge (then the circumstance is relevant)."""
    return any(charge == base_charge(verb) for charge, _ in CIRCUMSTANCE_OVERRIDES)


CHARGES: tuple[str, ...] = tuple(
    sorted({act.charge for act in ACTS} | set(CIRCUMSTANCE_OVERRIDES.values()))
)


# --------------------------------------------------------------------------------------------------
# Template sets. A fact template may omit slots; an omitted circumstance means "none".


@dataclass(frozen=True)
class TemplateSet:
    """Sentence templates of one wording. Swapping the set checks that results do not hinge on it."""

    name: str
    facts: tuple[str, ...]
    distractors: tuple[str, ...]
    questions: tuple[str, ...]


TEMPLATE_SETS: dict[str, TemplateSet] = {
    "standard": TemplateSet(
        name="standard",
        facts=(
            "{victim} was {act} by {name}.",
            "{victim} was {act} by {name} {circumstance}.",
            "{circumstance}, {victim} was {act} by {name}, a {occupation}.",
            "{victim} was {act} {instrument} by {name}.",
            "The court heard that {victim} was {act} by the {occupation} {name}.",
        ),
        distractors=(
            "The hearing took place in {city} on {day}.",
            "A witness, {witness}, gave evidence.",
            "{witness} reported the incident to the police.",
        ),
        questions=(
            "What is the charge against {name}",
            "Which charge applies to {name}",
            "State the offence of {name}",
        ),
    ),
    "alternate": TemplateSet(
        name="alternate",
        facts=(
            "Police say {victim} was {act} by {name} {instrument}.",
            "{victim} had been {act} by {name} {circumstance}.",
            "Records show that {victim} was {act} by {name} ({occupation}).",
            "{circumstance}, {victim} was {act} {instrument} by {name}.",
            "According to witnesses, {victim} was {act} by the {occupation} {name}.",
        ),
        distractors=(
            "The case was heard in {city} on a {day}.",
            "{witness} called the police.",
            "The judge adjourned the trial until {day}.",
        ),
        questions=(
            "For which offence is the court trying {name}",
            "Name the charge brought against {name}",
            "What offence was committed by {name}",
        ),
    ),
}
"""Question templates end with the queried name, and the answer follows it directly.

Why this shape (measured on 2-layer models): with an ``Answer:`` cue the model must first fetch the
queried name from a few tokens back, and with active-voice facts ("Carla mugged ...") the act must
first learn whose it is; each extra composition step kept training on the "pick any act in the
prompt" plateau for thousands of steps. Ending on the name, and stating the act before the name
("... was mugged by Carla"), lets the name token collect its act and the final token find that
name by identity: a lookup a small model learns in about a thousand steps.
"""


@functools.lru_cache(maxsize=None)
def parse_template(template: str) -> tuple[tuple[str, str | None], ...]:
    """``(literal, slot name or None)`` pieces of a template, parsed once."""
    return tuple((literal, name) for literal, name, _, _ in string.Formatter().parse(template))


@functools.lru_cache(maxsize=None)
def template_fields(template: str) -> frozenset[str]:
    """Slot names of a template."""
    return frozenset(name for _, name in parse_template(template) if name)
