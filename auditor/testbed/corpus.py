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

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from auditor.testbed.lexicon import (
    ACTS,
    ACT_BY_VERB,
    CHARGES,
    CIRCUMSTANCES,
    CITIES,
    DAYS,
    INSTRUMENTS,
    NAMES,
    OCCUPATIONS,
    TEMPLATE_SETS,
    TemplateSet,
    VICTIMS,
    circumstance_matters,
    parse_template,
    template_fields,
)
from auditor.testbed.prompts import DEFAULT_MAX_PLAYERS, AuditPrompt, Defendant, Mode, Span

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
