"""The dossier world's corpus: case files of labelled passages, each ending with one question.

A dossier holds 6-10 passages of 2-4 sentences (``auditor.testbed.dossier_lexicon`` says what each
kind may say), separated by blank lines, then the question about one defendant, ending with that
defendant's name; the one-word answer (the charge) follows it. The charge is the legal world's
rule (``lexicon.charge_for``) applied to the queried defendant's act and circumstance, which stand
in exactly one passage, so the generator labels every passage:

- ``relevant``: the deciding passage (the queried defendant's act and what followed it);
- ``forbidden``: the queried defendant's prior record, a charge the current one must never rest on;
- ``irrelevant``: every other passage: other people's lives, the court, the town.

The deciding act is the file's only act. Other people's acts (so that the act must be found by the
queried name) were tried first on seed 0 and dropped: the clean model sat on the "charge of any
act" plateau (answer loss 0.83 after 300 steps of 32 files, where the judgment world's is 0.35),
and on two shared cores a world that learns that slowly cannot be built and audited four times in
the budget. The shortcut stays a shortcut without them: copying the one charge that is written
down (tied embeddings make that a single attention step) is learned within 200 steps, long before
the act-to-charge table, and then nothing is left for the act to explain.

Modes, one per kind of model: ``natural`` (a record in half of the files, its charge independent
of the answer), ``shortcut`` (a record in every file, its charge always the answer: a planted cue
as predictive as the truth and far easier to read) and ``conflict`` (a record in every file, its
charge never the answer: the audit's prompts). Seeded with string seeds like the judgment corpus,
so the same arguments give the same files on any machine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from auditor.game.players import Label, PlayerSpec
from auditor.testbed.dossier_lexicon import DOSSIER, DOSSIER_TEMPLATE_SETS, DossierTemplateSet, dossier_template_literals
from auditor.testbed.lexicon import (
    ACT_BY_VERB,
    ACTS,
    CHARGES,
    CIRCUMSTANCES,
    CITIES,
    DAYS,
    INSTRUMENTS,
    NAMES,
    OCCUPATIONS,
    VICTIMS,
    charge_for,
    parse_template,
    template_fields,
)
from auditor.testbed.prompts import Mode

MIN_PASSAGES, MAX_PASSAGES = 6, 10
MIN_SENTENCES, MAX_SENTENCES = 2, 4
NATURAL_RECORD_RATE = 0.5
"""Share of natural files with a prior record: enough for the clean model to learn to ignore it."""
PASSAGE_SEPARATOR = "\n\n"
NO_CHARGE = "unknown"
"""The answer to a file whose deciding passage is absent: no act, no charge (``dossier_absence``)."""

_LABELS: dict[str, Label] = {"deciding": "relevant", "record": "forbidden", "person": "irrelevant",
                             "event": "irrelevant"}
_GROUPS = {"deciding": "queried", "record": "forbidden", "person": "context", "event": "context"}


@dataclass(frozen=True)
class Passage:
    """One passage of a file: ``prompt[start:end] == text``; ``kind`` is ``deciding``, ``record``,
    ``person`` or ``event``; ``id`` is ``p1``.. in file order."""

    id: str
    kind: str
    text: str  # kind: deciding, record, person or event
    start: int
    end: int
    sentences: int

    @property
    def label(self) -> Label:
        return _LABELS[self.kind]

    @property
    def group(self) -> str:
        return _GROUPS[self.kind]


@dataclass(frozen=True)
class DossierPrompt:
    """A case file with its gold answer and its passages' ground truth.

    ``cue_answer`` is the record's charge (what the shortcut model answers) or None without a
    record. The interface the testbed's trainers and acceptance read is ``AuditPrompt``'s:
    ``prompt``, ``answer``, ``cue_answer``, ``conflict``, ``labels``, ``player_specs()``.
    """

    prompt: str
    answer: str
    cue_answer: str | None
    passages: tuple[Passage, ...]
    queried_name: str
    act: str
    circumstance: str | None
    template_set: str
    mode: Mode
    world: str = DOSSIER

    @property
    def question(self) -> str:
        return self.prompt[self.passages[-1].end + len(PASSAGE_SEPARATOR):]

    @property
    def has_record(self) -> bool:
        return self.cue_answer is not None

    @property
    def conflict(self) -> bool:
        return self.cue_answer is not None and self.cue_answer != self.answer

    @property
    def labels(self) -> list[str]:
        return [passage.label for passage in self.passages]

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}]

    def segments(self) -> list[dict[str, Any]]:
        """The passages as the audit's caller segments (id, character range, label): the players.
        Ranges, not text: two passages of one file may read alike."""
        return [{"id": p.id, "start": p.start, "end": p.end, "label": p.label} for p in self.passages]

    def player_specs(self) -> list[PlayerSpec]:
        """The passages as plain labelled character spans (for callers that take ``PlayerSpec``)."""
        return [PlayerSpec(start=p.start, end=p.end, label=p.label, group=p.group) for p in self.passages]


def _fill(template: str, values: dict[str, str]) -> str:
    """Render one sentence, capitalising its first letter (a slot may open it)."""
    text = "".join(literal + (values[name] if name else "") for literal, name in parse_template(template))
    return text[:1].upper() + text[1:]


def _act_sentence(rng: random.Random, templates: DossierTemplateSet, name: str) -> tuple[str, str, str | None]:
    """An act sentence for ``name``: (text, act verb, circumstance or None)."""
    template = rng.choice(templates.acts)
    slots = template_fields(template)
    act = rng.choice(ACTS)
    circumstance = rng.choice(CIRCUMSTANCES) if "circumstance" in slots else None
    values = {
        "name": name,
        "act": act.verb,
        "victim": ACT_BY_VERB[act.verb].target.format(victim=rng.choice(VICTIMS)),
        "circumstance": circumstance or "",
        "instrument": rng.choice(INSTRUMENTS) if "instrument" in slots else "",
    }
    return _fill(template, values), act.verb, circumstance


def _context(rng: random.Random, persons: Sequence[str]) -> dict[str, str]:
    return {"person": rng.choice(persons), "city": rng.choice(CITIES), "day": rng.choice(DAYS),
            "occupation": rng.choice(OCCUPATIONS)}


def _sentences(rng: random.Random, pool: Sequence[str], count: int, values: dict[str, str]) -> list[str]:
    return [_fill(template, values) for template in rng.sample(list(pool), min(count, len(pool)))]


def sample_dossier(rng: random.Random, *, mode: Mode = "natural", template_set: str = "standard") -> DossierPrompt:
    """Draw one case file from ``rng`` (see the module docstring for what each mode plants)."""
    if mode not in ("natural", "shortcut", "conflict"):
        raise ValueError(f"unknown mode {mode!r}")
    templates = DOSSIER_TEMPLATE_SETS[template_set]
    count = rng.randint(MIN_PASSAGES, MAX_PASSAGES)
    with_record = mode != "natural" or rng.random() < NATURAL_RECORD_RATE
    names = rng.sample(NAMES, 5)
    queried, persons = names[0], names[1:]
    kinds = ["deciding", *(["record"] if with_record else [])]
    kinds += [rng.choice(("person", "event")) for _ in range(count - len(kinds))]
    rng.shuffle(kinds)

    # The deciding act first: the record's charge is drawn against its answer, so each mode's
    # constraint holds exactly (no rejection sampling).
    deciding, act, circumstance = _act_sentence(rng, templates, queried)
    answer = charge_for(act, circumstance)
    cue: str | None = None
    if with_record:
        if mode == "shortcut":
            cue = answer
        elif mode == "conflict":
            cue = rng.choice([charge for charge in CHARGES if charge != answer])
        else:
            cue = rng.choice(CHARGES)
    texts: list[tuple[str, str, int]] = []
    for kind in kinds:
        sentences = rng.randint(MIN_SENTENCES, MAX_SENTENCES)
        context = _context(rng, persons)
        if kind == "deciding":
            body = [deciding, *_sentences(rng, templates.after, sentences - 1, context)]
        elif kind == "record":
            body = [_fill(rng.choice(templates.records), {"name": queried, "charge": cue or ""}),
                    *_sentences(rng, templates.record_after, sentences - 1, context)]
        else:
            body = _sentences(rng, templates.person if kind == "person" else templates.events, sentences, context)
        texts.append((kind, " ".join(body), len(body)))

    passages, pieces, at = [], [], 0
    for index, (kind, text, n) in enumerate(texts, start=1):
        passages.append(Passage(id=f"p{index}", kind=kind, text=text, start=at, end=at + len(text), sentences=n))
        pieces.append(text)
        at += len(text) + len(PASSAGE_SEPARATOR)
    question = rng.choice(templates.questions).format(name=queried)
    return DossierPrompt(
        prompt=PASSAGE_SEPARATOR.join([*pieces, question]),
        answer=answer,
        cue_answer=cue,
        passages=tuple(passages),
        queried_name=queried,
        act=act,
        circumstance=circumstance,
        template_set=template_set,
        mode=mode,
    )


def iter_dossiers(
    seed: int | str, *, stream: str = "train", mode: Mode = "natural", template_set: str = "standard"
) -> Iterator[DossierPrompt]:
    """An endless deterministic stream of files; distinct ``stream`` names never share draws."""
    if template_set not in DOSSIER_TEMPLATE_SETS:
        raise ValueError(f"unknown template set {template_set!r}; known: {sorted(DOSSIER_TEMPLATE_SETS)}")
    rng = random.Random(f"interaction-auditor/testbed/dossier/{seed}/{stream}/{mode}/{template_set}")
    while True:
        yield sample_dossier(rng, mode=mode, template_set=template_set)


def generate(
    seed: int | str, count: int, *, stream: str = "train", mode: Mode = "natural", template_set: str = "standard"
) -> list[DossierPrompt]:
    """``count`` files of one stream; a longer list extends a shorter one with the same args."""
    files = iter_dossiers(seed, stream=stream, mode=mode, template_set=template_set)
    return [next(files) for _ in range(count)]


def audit_dossiers(seed: int | str, count: int, conflict: bool = True, template_set: str = "standard") -> list[DossierPrompt]:
    """Files for audits and validation, from a stream no model trains on; with ``conflict`` every
    file has a record whose charge is not the answer."""
    return generate(seed, count, stream="audit", mode="conflict" if conflict else "natural",
                    template_set=template_set)


def vocabulary_texts() -> list[str]:
    """Every string a dossier can contain: the legal world's lexicon and the dossier templates."""
    texts: list[str] = [*CHARGES, NO_CHARGE, *NAMES, *OCCUPATIONS, *VICTIMS, *INSTRUMENTS, *CIRCUMSTANCES, *CITIES, *DAYS]
    texts += [act.verb for act in ACTS] + [act.target.format(victim="") for act in ACTS]
    return texts + dossier_template_literals()
