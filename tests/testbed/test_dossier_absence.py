"""Absent passages in dossier training data are exactly the audit's masked state of those passages."""

from __future__ import annotations

import random

from auditor.testbed import dossier_corpus
from auditor.testbed.datasets import tokenizer_for
from auditor.testbed.dossier_absence import absent_passages, blank_absent_passages
from auditor.testbed.models import model_specs
from auditor.testbed.train import encode


def test_only_passages_the_answer_does_not_depend_on_are_ever_absent() -> None:
    rng = random.Random(0)
    seen = {"natural": set(), "shortcut": set()}
    for mode in seen:
        for file in dossier_corpus.generate(0, 300, mode=mode):  # type: ignore[arg-type]
            for index in absent_passages(file, rng):
                seen[mode].add(file.passages[index].kind)
    assert seen["natural"] == {"person", "event", "record"}
    assert seen["shortcut"] == {"person", "event"}  # the planted cue stays, and no file loses its act


def test_blanked_tokens_are_the_chosen_passages_tokens_and_positions_are_kept() -> None:
    tok = tokenizer_for(model_specs(0, "standard", "dossier")["clean"])
    files = dossier_corpus.generate(4, 30)
    data = encode(tok, [(f.prompt, f.answer) for f in files])
    before = data.ids.clone()
    blanked = blank_absent_passages(tok, files, data, seed=4)
    assert data.ids.shape == before.shape and blanked > 0
    rng = random.Random(f"interaction-auditor/testbed/dossier/absent/4/{len(files)}")  # the same draws
    for row, file in enumerate(files):
        chosen = absent_passages(file, rng)
        expected = before[row].clone()
        for index in chosen:  # the oracle: each absent passage tokenized on its own, found in the row
            passage = file.passages[index]
            words = tok(passage.text, add_special_tokens=False)["input_ids"]
            start = len(tok(file.prompt[: passage.start])["input_ids"])
            assert before[row, start:start + len(words)].tolist() == words
            expected[start:start + len(words)] = tok.pad_token_id
        assert data.ids[row].tolist() == expected.tolist()
    again = encode(tok, [(f.prompt, f.answer) for f in files])
    assert blank_absent_passages(tok, files, again, seed=4) == blanked and again.ids.equal(data.ids)
