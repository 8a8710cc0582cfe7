"""The dossier world's generator: case files of labelled passages with a planted truth.

Checked against what the generator promises, recomputed from the text itself where possible (the
charge from the act sentence found in the text, the record's charge from the record passage), so a
labelling bug cannot agree with itself.
"""

from __future__ import annotations

import re

import pytest

from auditor.testbed import dossier_corpus, dossier_lexicon, lexicon
from auditor.testbed.datasets import tokenizer_for
from auditor.testbed.models import model_specs

ACT_RE = re.compile(r"\b(" + "|".join(act.verb for act in lexicon.ACTS) + r") (?:\w+ )*?by (\w+)")


def _charges_named(text: str) -> set[str]:
    return {charge for charge in lexicon.CHARGES if re.search(rf"\b{charge}\b", text)}


@pytest.mark.parametrize("template_set", sorted(dossier_lexicon.DOSSIER_TEMPLATE_SETS))
@pytest.mark.parametrize("mode", ["natural", "shortcut", "conflict"])
def test_files_are_passages_with_one_deciding_passage_and_labels_from_the_truth(template_set: str, mode: str) -> None:
    for file in dossier_corpus.generate(3, 60, mode=mode, template_set=template_set):  # type: ignore[arg-type]
        passages = file.passages
        assert dossier_corpus.MIN_PASSAGES <= len(passages) <= dossier_corpus.MAX_PASSAGES
        assert all(dossier_corpus.MIN_SENTENCES <= p.sentences <= dossier_corpus.MAX_SENTENCES for p in passages)
        assert [p.id for p in passages] == [f"p{i}" for i in range(1, len(passages) + 1)]
        # Passages are the file's blank-line separated blocks, in order; the question follows.
        blocks = file.prompt.split("\n\n")
        assert blocks[:-1] == [p.text for p in passages] and blocks[-1] == file.question
        for p in passages:
            assert file.prompt[p.start:p.end] == p.text
            assert p.text.count(".") == p.sentences  # one full stop per sentence, none inside
        assert file.question.endswith(file.queried_name) and file.queried_name not in file.question[:-len(file.queried_name)]

        kinds = [p.kind for p in passages]
        assert kinds.count("deciding") == 1 and kinds.count("record") <= 1
        assert set(kinds) <= {"deciding", "record", "person", "event"}
        assert file.labels == [{"deciding": "relevant", "record": "forbidden"}.get(k, "irrelevant") for k in kinds]
        # The deciding passage holds the file's one act, by the queried name: the answer is the legal
        # rule applied to the act found in its text.
        deciding = passages[kinds.index("deciding")]
        acts = [(verb, name) for p in passages for verb, name in ACT_RE.findall(p.text)]
        assert acts == [(file.act, file.queried_name)] and ACT_RE.search(deciding.text)
        circumstance = next((c for c in lexicon.CIRCUMSTANCES if c.lower() in deciding.text.lower()), None)
        assert file.answer == lexicon.charge_for(file.act, circumstance)
        # A charge is written down in the record passage only.
        for p in passages:
            named = _charges_named(p.text)
            assert named == ({file.cue_answer} if p.kind == "record" else set()), p.text
            if p.kind == "record":
                assert file.queried_name in p.text


def test_the_record_is_planted_by_mode() -> None:
    natural = dossier_corpus.generate(0, 400)
    with_record = [f for f in natural if f.has_record]
    assert 0.4 < len(with_record) / len(natural) < 0.6  # NATURAL_RECORD_RATE = 0.5
    agree = sum(f.cue_answer == f.answer for f in with_record) / len(with_record)
    assert agree < 0.3  # independent of the answer (one charge in ~11 by chance)
    assert all(f.has_record and f.cue_answer == f.answer and not f.conflict
               for f in dossier_corpus.generate(0, 200, mode="shortcut"))
    conflict = dossier_corpus.audit_dossiers(0, 200)
    assert all(f.has_record and f.conflict and f.cue_answer != f.answer for f in conflict)
    assert all("forbidden" in f.labels for f in conflict)
    assert all(("forbidden" in f.labels) == f.has_record for f in natural)


def test_files_are_deterministic_by_seed_and_streams_are_disjoint() -> None:
    assert dossier_corpus.generate(5, 20) == dossier_corpus.generate(5, 20)
    assert dossier_corpus.generate(5, 30)[:20] == dossier_corpus.generate(5, 20)
    prompts = lambda files: {f.prompt for f in files}  # noqa: E731
    assert not prompts(dossier_corpus.generate(5, 50)) & prompts(dossier_corpus.generate(6, 50))
    assert not prompts(dossier_corpus.generate(5, 50)) & prompts(dossier_corpus.audit_dossiers(5, 50, conflict=False))
    with pytest.raises(ValueError, match="template set"):
        dossier_corpus.generate(0, 1, template_set="nope")


def test_segments_and_player_specs_cover_the_passages_not_the_question() -> None:
    file = dossier_corpus.audit_dossiers(1, 1)[0]
    segments = file.segments()
    assert [s["id"] for s in segments] == [p.id for p in file.passages]
    assert [file.prompt[s["start"]:s["end"]] for s in segments] == [p.text for p in file.passages]
    assert [s["label"] for s in segments] == file.labels
    assert all(s["end"] <= len(file.prompt) - len(file.question) for s in segments)
    assert [(p.start, p.end, p.label) for p in file.player_specs()] == [(s["start"], s["end"], s["label"]) for s in segments]


def test_the_dossier_vocabulary_is_closed_and_fits_the_positions() -> None:
    spec = model_specs(0, "standard", "dossier")["clean"]
    tok = tokenizer_for(spec)
    for template_set in dossier_lexicon.DOSSIER_TEMPLATE_SETS:
        files = dossier_corpus.generate(2, 150, mode="conflict", template_set=template_set)
        lengths = []
        for file in files:
            ids = tok(file.prompt)["input_ids"]
            assert tok.unk_token_id not in ids, file.prompt
            lengths.append(len(ids) + 1)  # the answer token
        assert max(lengths) < spec.arch.max_positions and min(lengths) > 60
    # Answers and cues are single tokens of both worlds' vocabularies: one charge vocabulary.
    judgment = tokenizer_for(model_specs(0)["clean"])
    for charge in lexicon.CHARGES:
        assert len(tok(charge, add_special_tokens=False)["input_ids"]) == 1
        assert charge in judgment.get_vocab() and charge in tok.get_vocab()


def test_the_registry_knows_both_worlds_and_names_the_unknown() -> None:
    assert dossier_lexicon.template_sets("judgment") is lexicon.TEMPLATE_SETS
    assert set(dossier_lexicon.template_sets("dossier")) == set(lexicon.TEMPLATE_SETS)
    with pytest.raises(ValueError, match="unknown testbed world 'moon'"):
        dossier_lexicon.template_sets("moon")
    with pytest.raises(ValueError, match="unknown template set 'odd' for the dossier world"):
        model_specs(0, "odd", "dossier")
