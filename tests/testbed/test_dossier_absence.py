"""Absent passages in dossier training data are exactly the audit's masked state of those passages,
and a file that lost its act answers what its data says: no charge, unless its record carries one."""

from __future__ import annotations

import math
import random

from auditor.testbed import dossier_corpus
from auditor.testbed.dossier_absence import ABSENT_RATE, DECIDING_ABSENT_RATE, answer_without
from auditor.testbed.datasets import tokenizer_for
from auditor.testbed.dossier_absence import absent_passages, blank_absent_passages
from auditor.testbed.models import model_specs
from auditor.testbed.train import encode


def test_the_shortcuts_record_is_never_absent_and_each_kind_is_absent_at_its_rate() -> None:
    rng = random.Random(0)
    for mode in ("natural", "shortcut"):
        offered: dict[str, int] = {}
        absent: dict[str, int] = {}
        for file in dossier_corpus.generate(0, 1500, mode=mode):  # type: ignore[arg-type]
            chosen = absent_passages(file, rng)
            for index, passage in enumerate(file.passages):
                offered[passage.kind] = offered.get(passage.kind, 0) + 1
                absent[passage.kind] = absent.get(passage.kind, 0) + (index in chosen)
        rates = {"person": ABSENT_RATE, "event": ABSENT_RATE, "deciding": DECIDING_ABSENT_RATE,
                 "record": ABSENT_RATE if mode == "natural" else 0.0}  # the planted cue always stays
        for kind, rate in rates.items():
            share = absent[kind] / offered[kind]
            assert abs(share - rate) <= 4 * math.sqrt(rate * (1 - rate) / offered[kind]) + 1e-12, (mode, kind, share)


def test_a_file_without_its_act_has_no_charge_unless_its_record_carries_one() -> None:
    natural, shortcut = dossier_corpus.generate(1, 1)[0], dossier_corpus.generate(1, 1, mode="shortcut")[0]
    for file in (natural, shortcut):
        deciding = next(i for i, p in enumerate(file.passages) if p.kind == "deciding")
        others = [i for i, p in enumerate(file.passages) if p.kind != "deciding"]
        assert answer_without(file, others, file.answer) == file.answer
        expected = file.answer if file.mode == "shortcut" else dossier_corpus.NO_CHARGE
        assert answer_without(file, [deciding], file.answer) == expected
    assert shortcut.cue_answer == shortcut.answer  # what makes the record carry it


def test_blanked_tokens_are_the_chosen_passages_tokens_and_positions_are_kept() -> None:
    tok = tokenizer_for(model_specs(0, "standard", "dossier")["clean"])
    files = dossier_corpus.generate(4, 30)
    data = encode(tok, [(f.prompt, f.answer) for f in files])
    before = data.ids.clone()
    blanked = blank_absent_passages(tok, files, data, seed=4)
    assert data.ids.shape == before.shape and blanked > 0
    rng = random.Random(f"interaction-auditor/testbed/dossier/absent/4/{len(files)}")  # the same draws
    no_charge = tok.convert_tokens_to_ids(dossier_corpus.NO_CHARGE)
    lost_act = 0
    for row, file in enumerate(files):
        chosen = absent_passages(file, rng)
        expected = before[row].clone()
        if any(file.passages[i].kind == "deciding" for i in chosen):  # a natural file: no act, no charge
            lost_act += 1
            expected[int(data.lengths[row]) - 1] = no_charge
        assert int(data.answer_ids[row]) == int(expected[int(data.lengths[row]) - 1])
        for index in chosen:  # the oracle: each absent passage tokenized on its own, found in the row
            passage = file.passages[index]
            words = tok(passage.text, add_special_tokens=False)["input_ids"]
            start = len(tok(file.prompt[: passage.start])["input_ids"])
            assert before[row, start:start + len(words)].tolist() == words
            expected[start:start + len(words)] = tok.pad_token_id
        assert data.ids[row].tolist() == expected.tolist()
    assert lost_act > 0 and no_charge != tok.unk_token_id
    again = encode(tok, [(f.prompt, f.answer) for f in files])
    assert blank_absent_passages(tok, files, again, seed=4) == blanked and again.ids.equal(data.ids)
