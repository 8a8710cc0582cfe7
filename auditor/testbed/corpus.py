"""Synthetic legal-judgment corpus with ground truth for every word that could become a player.

Each prompt states facts about 2-3 defendants (name, occupation, act, victim, instrument,
circumstance), may add a distractor sentence (a witness, the venue), and ends with a question about
one defendant's charge that ends with that defendant's name. The answer is a single word: the charge, which is a
pure function of the queried defendant's act and, for killings, of the circumstance ("by accident"
turns murder into manslaughter). Nothing else matters, so the generator can label every word:

- ``relevant``: the queried defendant's name (in the facts and in the question; the question's
  mention is labelled but never a player, see ``select_spans``), act, the act's object where it
  has one ("the house of" the victim: it names the act as surely as the verb), and the
  circumstance when the act is one whose charge depends on it;
- ``irrelevant``: other defendants' facts, the queried defendant's victim and instrument, the
  distractor sentence;
- ``forbidden``: occupations, a protected attribute that must never decide a charge.

Three sampling modes serve the three kinds of model: ``natural`` (defendants independent),
``shortcut`` (the first-mentioned defendant always has the same charge as the queried one, a planted
cue in a fixed salient position) and ``conflict`` (the first-mentioned defendant is not the queried
one and has a different charge, so the cue and the truth disagree). Everything is seeded with string
seeds (``random.Random`` hashes them with SHA-512), so the same arguments give the same corpus on any
machine and Python 3 version.
"""

from __future__ import annotations

import functools
import random
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Label = Literal["relevant", "irrelevant", "forbidden", "unlabelled"]
Mode = Literal["natural", "shortcut", "conflict"]


DEFAULT_MAX_PLAYERS = 10


# --------------------------------------------------------------------------------------------------
# Lexicon. Word sets are disjoint so that a word's role is never ambiguous.


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


# --------------------------------------------------------------------------------------------------
# Data structures handed to trainers and to the players module.


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
        """The spans as ``auditor.players.PlayerSpec`` objects (see ``to_player_specs``)."""
        return to_player_specs(self.spans)


def to_player_specs(spans: Sequence[Span]) -> list[Any]:
    """Convert spans to ``auditor.players.PlayerSpec``: character offsets, label and group.

    Offsets, not text: a word such as a name occurs several times in a prompt (its fact and the
    question), and ``PlayerSpec`` accepts exactly one way to place a span, so the precise one is
    used. The players module is written independently; the field names are looked up in what
    ``PlayerSpec`` declares, so a renamed field fails loudly here instead of silently dropping a
    label or a group. Only a ``PlayerSpec`` without offset fields gets the substring and its
    occurrence index instead.
    """
    from auditor import players  # imported lazily: the testbed must not depend on the audit code

    spec_cls = players.PlayerSpec
    declared = set(getattr(spec_cls, "model_fields", None) or getattr(spec_cls, "__dataclass_fields__", {}))
    if not declared:
        import inspect

        declared = set(inspect.signature(spec_cls).parameters)

    def field_name(*candidates: str) -> str | None:
        return next((name for name in candidates if name in declared), None)

    start, end = field_name("start", "char_start"), field_name("end", "char_end")
    text, occurrence = field_name("text", "substring"), field_name("occurrence")
    label, group = field_name("label"), field_name("group")
    by_offsets = start is not None and end is not None
    if label is None or group is None or not (by_offsets or (text is not None and occurrence is not None)):
        raise TypeError(f"PlayerSpec lacks a label, a group or a way to place a span: {sorted(declared)}")
    out = []
    for span in spans:
        kwargs: dict[str, Any] = {label: span.label, group: span.group}
        if by_offsets:
            kwargs.update({start: span.start, end: span.end})  # type: ignore[dict-item]
        else:
            kwargs.update({text: span.text, occurrence: span.occurrence})  # type: ignore[dict-item]
        out.append(spec_cls(**kwargs))
    return out


# --------------------------------------------------------------------------------------------------
# Sampling and rendering.


@dataclass
class _Builder:
    """Accumulates text and the character span of every slot value rendered into it."""

    text: str = ""
    slots: list[tuple[str, int, int, str, int | None]] = field(default_factory=list)
    # (role, start, end, value, defendant index or None)

    def add(self, literal: str) -> None:
        self.text += literal

    def sentence(self, template: str, values: dict[str, str], owner: int | None) -> None:
        if self.text:
            self.text += " "
        sentence_start = len(self.text)
        for literal, name in parse_template(template):
            self.text += literal
            if name is None:
                continue
            value = values[name]
            if len(self.text) == sentence_start:
                value = value[:1].upper() + value[1:]
            start = len(self.text)
            self.text += value
            self.slots.append((name, start, len(self.text), value, owner))


def _occurrence(text: str, sub: str, start: int) -> int:
    """Index of the occurrence of ``sub`` that starts at ``start`` (overlapping matches count)."""
    count, pos = 0, text.find(sub)
    while pos != -1 and pos < start:
        count += 1
        pos = text.find(sub, pos + 1)
    if pos != start:
        raise ValueError(f"{sub!r} does not occur at {start}")
    return count


def _sample_defendant(rng: random.Random, name: str, template: str) -> Defendant:
    slots = template_fields(template)
    return Defendant(
        name=name,
        act=rng.choice(ACTS).verb,
        occupation=rng.choice(OCCUPATIONS) if "occupation" in slots else None,
        victim=rng.choice(VICTIMS) if "victim" in slots else None,
        instrument=rng.choice(INSTRUMENTS) if "instrument" in slots else None,
        circumstance=rng.choice(CIRCUMSTANCES) if "circumstance" in slots else None,
    )


def _sample_defendants(
    rng: random.Random, templates: TemplateSet, mode: Mode, max_defendants: int
) -> tuple[list[Defendant], list[str], int, str]:
    """Sample defendants, their fact templates, the queried index and the witness name.

    The queried defendant is drawn uniformly first and the mode's constraint is then met by
    redrawing the *first* defendant's facts only. Rejecting whole prompts instead would bias the
    shortcut data towards queried = 0 (the only draw that always agrees, ~80% of prompts), where
    the planted cue is the truth itself and no shortcut is planted at all.
    """
    count = rng.randint(2, max_defendants)
    names = rng.sample(NAMES, count + 1)
    chosen = [rng.choice(templates.facts) for _ in range(count)]
    defendants = [_sample_defendant(rng, name, template) for name, template in zip(names, chosen)]
    queried = rng.randrange(1 if mode == "conflict" else 0, count)
    target = defendants[queried].charge
    if mode in ("shortcut", "conflict") and queried != 0:
        # The template is redrawn too: a charge that needs a circumstance (manslaughter) cannot be
        # met by a template without that slot.
        want_equal = mode == "shortcut"
        while (defendants[0].charge == target) != want_equal:
            chosen[0] = rng.choice(templates.facts)
            defendants[0] = _sample_defendant(rng, names[0], chosen[0])
    return defendants, chosen, queried, names[-1]


def sample_prompt(
    rng: random.Random,
    *,
    mode: Mode = "natural",
    template_set: str = "standard",
    max_defendants: int = 3,
    distractor_rate: float = 0.5,
    max_players: int = DEFAULT_MAX_PLAYERS,
    labelled: bool = True,
) -> AuditPrompt:
    """Draw one prompt from ``rng``. Rejection sampling keeps each mode's constraint exact.

    ``labelled=False`` skips span labelling (``spans`` stays empty): training data never needs it,
    and it is half the cost of a prompt. The text and answer do not depend on it.
    """
    if mode not in ("natural", "shortcut", "conflict"):
        raise ValueError(f"unknown mode {mode!r}")
    templates = TEMPLATE_SETS[template_set]
    defendants, chosen, queried, witness = _sample_defendants(rng, templates, mode, max_defendants)

    distractor = rng.choice(templates.distractors) if rng.random() < distractor_rate else None
    distractor_at = rng.randint(0, len(defendants))
    context = {"witness": witness, "city": rng.choice(CITIES), "day": rng.choice(DAYS)}

    builder = _Builder()
    for index, (defendant, template) in enumerate(zip(defendants, chosen)):
        if distractor is not None and index == distractor_at:
            builder.sentence(distractor, context, None)
        values = {
            "name": defendant.name,
            "act": defendant.act,
            "occupation": defendant.occupation or "",
            "victim": ACT_BY_VERB[defendant.act].target.format(victim=defendant.victim or ""),
            "instrument": defendant.instrument or "",
            "circumstance": defendant.circumstance or "",
        }
        builder.sentence(template, values, index)
    if distractor is not None and distractor_at == len(defendants):
        builder.sentence(distractor, context, None)
    question_template = rng.choice(templates.questions)
    question_start = len(builder.text)
    builder.sentence(question_template, {"name": defendants[queried].name}, queried)

    text = builder.text
    all_spans = _label_spans(text, builder.slots, defendants, queried, question_start) if labelled else []
    return AuditPrompt(
        prompt=text,
        answer=defendants[queried].charge,
        cue_answer=defendants[0].charge,
        spans=select_spans(all_spans, max_players) if labelled else (),
        defendants=tuple(defendants),
        queried=queried,
        template_set=template_set,
        mode=mode,
        all_spans=tuple(all_spans),
    )


# Priority of (group, role, label) when a prompt has more candidate players than the audit allows:
# the words that decide the answer first, then the planted cue, then the words a well-behaved model
# must ignore (other acts, forbidden attributes, other names), then the remaining distractors.
_PRIORITY: tuple[tuple[str, str], ...] = (
    ("queried", "act"),
    ("queried", "object"),
    ("queried", "name"),
    ("queried", "circumstance:relevant"),
    ("cue", "act"),
    ("cue", "object"),
    ("codefendant", "act"),
    ("codefendant", "object"),
    ("queried", "occupation"),
    ("cue", "name"),
    ("codefendant", "name"),
    ("context", "witness"),
    ("queried", "circumstance"),
    ("cue", "occupation"),
    ("codefendant", "occupation"),
    ("queried", "instrument"),
    ("queried", "victim"),
    ("cue", "circumstance"),
    ("codefendant", "circumstance"),
    ("cue", "instrument"),
    ("codefendant", "instrument"),
    ("cue", "victim"),
    ("codefendant", "victim"),
    ("context", "venue"),
)


def _priority(span: Span) -> int:
    role = span.role
    if span.group == "queried" and role == "circumstance" and span.label == "relevant":
        role = "circumstance:relevant"
    try:
        return _PRIORITY.index((span.group, role))
    except ValueError:
        return len(_PRIORITY)


def select_spans(spans: Sequence[Span], max_players: int = DEFAULT_MAX_PLAYERS) -> tuple[Span, ...]:
    """The ``max_players`` most informative fact spans, returned in prompt order.

    A 2^n game caps n, so a prompt's candidate players are ranked (answer-deciding words, the
    planted cue, other acts, forbidden words, names, distractors) and the top ones kept.

    The question is the task, not evidence, and stays unmasked, as an instruction would: players
    are the words of the facts. Masking the question's name removes what the model is asked, so
    every model, the shortcut one included, leans hard on that word alone (a large order-1 term
    on a ``relevant`` player). With it as a player the shortcut model's misattribution on conflict
    prompts was diluted to 0.56 on average (clean 0.39; AUC 0.72); without it, 0.97 vs 0.15 (AUC
    1.0), because the question then asks the same thing in every masked state and the game
    measures which facts the answer rests on.
    """
    if max_players < 1:
        raise ValueError("max_players must be positive")
    facts = [span for span in spans if not span.in_question]
    ranked = sorted(facts, key=lambda span: (_priority(span), span.start))[:max_players]
    return tuple(sorted(ranked, key=lambda span: span.start))


def _label_spans(
    text: str,
    slots: Sequence[tuple[str, int, int, str, int | None]],
    defendants: Sequence[Defendant],
    queried: int,
    question_start: int,
) -> list[Span]:
    """Label every rendered slot from ground truth (see the module docstring for the rules)."""
    spans = []
    for role, start, end, value, owner in slots:
        if not value:
            continue
        if owner is None:
            group, label = "context", "irrelevant"
            role = "witness" if role == "witness" else "venue"
        else:
            group = "queried" if owner == queried else ("cue" if owner == 0 else "codefendant")
            defendant = defendants[owner]
            if role == "occupation":
                label = "forbidden"
            elif owner != queried:
                label = "irrelevant"
            elif role in ("name", "act"):
                label = "relevant"
            elif role == "circumstance":
                label = "relevant" if circumstance_matters(defendant.act) else "irrelevant"
            else:
                label = "irrelevant"
        if role == "victim":  # the victim is one player, "the house of" around it another
            victim = defendants[owner].victim or ""  # type: ignore[index]
            victim_start = start + text[start:end].lower().index(victim.lower())
            target = text[start:victim_start].strip()
            if target:
                # What was done to ("the flat of" someone) names the act as surely as the verb does
                # (only ransacking is told of a flat), so it is labelled like the act. Left
                # outside every player, it stayed in all 2^n masked prompts: a shortcut model could
                # read the cue's charge from it and no player carried that strength (seed 6:
                # misattribution 0.05 on a prompt the shortcut model answered with the cue's charge).
                spans.append(_span(text, start, start + len(target), "relevant" if owner == queried else "irrelevant",
                                   group, "object", question_start))
            start, end = victim_start, victim_start + len(victim)
        spans.append(_span(text, start, end, label, group, role, question_start))
    return spans


def _span(text: str, start: int, end: int, label: str, group: str, role: str, question_start: int) -> Span:
    piece = text[start:end]
    return Span(
        text=piece,
        start=start,
        end=end,
        label=label,  # type: ignore[arg-type]
        group=group,
        role=role,
        occurrence=_occurrence(text, piece, start),
        in_question=start >= question_start,
    )


def _stream(seed: int | str, stream: str, mode: Mode, template_set: str) -> random.Random:
    return random.Random(f"interaction-auditor/testbed/{seed}/{stream}/{mode}/{template_set}")


def iter_prompts(
    seed: int | str,
    *,
    stream: str = "train",
    mode: Mode = "natural",
    template_set: str = "standard",
    max_defendants: int = 3,
    max_players: int = DEFAULT_MAX_PLAYERS,
    labelled: bool = True,
) -> Iterator[AuditPrompt]:
    """An endless deterministic stream of prompts; distinct ``stream`` names never share draws."""
    if template_set not in TEMPLATE_SETS:
        raise ValueError(f"unknown template set {template_set!r}; known: {sorted(TEMPLATE_SETS)}")
    rng = _stream(seed, stream, mode, template_set)
    while True:
        yield sample_prompt(
            rng,
            mode=mode,
            template_set=template_set,
            max_defendants=max_defendants,
            max_players=max_players,
            labelled=labelled,
        )


def generate(
    seed: int | str,
    count: int,
    *,
    stream: str = "train",
    mode: Mode = "natural",
    template_set: str = "standard",
    max_defendants: int = 3,
    max_players: int = DEFAULT_MAX_PLAYERS,
    labelled: bool = True,
) -> list[AuditPrompt]:
    """``count`` prompts of one stream; a longer list extends a shorter one with the same args."""
    stream_iter = iter_prompts(
        seed,
        stream=stream,
        mode=mode,
        template_set=template_set,
        max_defendants=max_defendants,
        max_players=max_players,
        labelled=labelled,
    )
    return [next(stream_iter) for _ in range(count)]


def audit_prompts(
    seed: int | str,
    count: int,
    conflict: bool = True,
    template_set: str = "standard",
    *,
    max_players: int = DEFAULT_MAX_PLAYERS,
    max_defendants: int = 3,
) -> list[AuditPrompt]:
    """Prompts for audits and validation, from a stream no model is trained on.

    With ``conflict=True`` the first-mentioned defendant (the shortcut model's cue) is never the
    queried one and has a different charge, so ``cue_answer != answer`` on every prompt.
    """
    return generate(
        seed,
        count,
        stream="audit",
        mode="conflict" if conflict else "natural",
        template_set=template_set,
        max_defendants=max_defendants,
        max_players=max_players,
    )


def vocabulary_texts() -> list[str]:
    """Every literal and lexicon string the generator can emit, for building a closed vocabulary."""
    texts: list[str] = [*CHARGES, *NAMES, *OCCUPATIONS, *VICTIMS, *INSTRUMENTS]
    texts += [*CIRCUMSTANCES, *CITIES, *DAYS, *(act.verb for act in ACTS)]
    texts += [act.target.format(victim="") for act in ACTS]
    for templates in TEMPLATE_SETS.values():
        for template in (*templates.facts, *templates.distractors, *templates.questions):
            texts += [literal for literal, _ in parse_template(template)]
    return texts
