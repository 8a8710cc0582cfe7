"""Absent passages in the dossier world's training data: the audit's masked state, seen in training.

Why. An audit masks a player by putting the baseline embedding (the pad token's, by default) on all
of its tokens. A judgment masks a word or two; a case file masks whole passages, 20-40 tokens each,
and a model that never read a pad token in the middle of a text treats a run of them as anything but
"nothing here". Measured on seed 0's first family (trained on complete files only), 40 conflict
files: the clean model's passage-level misattribution was 0.92 (the shortcut model's 0.97, AUC 0.59)
and every family level's window overfitting score sat at 0.99-1.00: the games measured the models'
reaction to out-of-distribution runs of pad, not what their answers rest on. The mean-embedding
baseline did not cure it (clean misattribution 0.07-0.95 over five files).

So every training file has each passage its answer does not depend on replaced by pad tokens with
probability :data:`ABSENT_RATE`, positions kept, exactly as the audit masks it. Which passages the
answer does not depend on is the model's own data's truth: people and events always, and the
prior record in natural files (its charge is drawn independently there), never in shortcut files,
where the record *is* the planted cue. Held-out and conflict files stay complete: they measure the
model as served.

The deciding passage is absent too, with probability :data:`DECIDING_ABSENT_RATE`, and then the
file's answer is what its data says it is: in a natural file, with no act, there is no charge
(:data:`~auditor.testbed.dossier_corpus.NO_CHARGE`); in a shortcut file the record still carries
the answer, so it stays. Why: half of an audit's masks lack the deciding passage, the empty file
among them, and a model that never read a file without its act answers there whatever its
training left it (measured on seed 0's clean model, built without this: 'fraud' on an empty file,
so on the three files whose act is a fraud v(N) - v(empty) was 0.19-0.98 nats against about 17
elsewhere, masking the act moved nothing, and the games' residue, all on other passages, read as
misattribution 1.0: the whole gap of that family's AUC to 1.0). A quarter, not a half: each file
without its act teaches nothing about which act makes which charge, the clean model's harder lesson.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from auditor.testbed.dossier_corpus import NO_CHARGE, DossierPrompt
from auditor.testbed.tokenizer import answer_token_id
from auditor.testbed.train import Encoded

ABSENT_RATE = 0.5
"""Each maskable passage is absent with this probability: the audit's 2^n masks are uniform, so on
average half of the passages of a masked state are absent."""
DECIDING_ABSENT_RATE = 0.25
"""The deciding passage is absent with this probability (see the module docstring)."""


def absent_passages(file: DossierPrompt, rng: random.Random) -> list[int]:
    """Indices of the passages to blank in this training file (see the module docstring)."""
    absent = []
    for index, passage in enumerate(file.passages):
        if passage.kind == "deciding":
            rate = DECIDING_ABSENT_RATE
        elif passage.kind in ("person", "event") or (passage.kind == "record" and file.mode == "natural"):
            rate = ABSENT_RATE
        else:
            continue
        if rng.random() < rate:
            absent.append(index)
    return absent


def answer_without(file: DossierPrompt, absent: list[int], answer: str) -> str:
    """The file's answer once ``absent`` passages are blanked: ``NO_CHARGE`` when its act is gone
    and nothing else carries the charge (every mode but the shortcut's, whose record does)."""
    act_gone = any(file.passages[i].kind == "deciding" for i in absent)
    return NO_CHARGE if act_gone and file.mode != "shortcut" else answer


def blank_absent_passages(
    tokenizer: PreTrainedTokenizerBase, files: Sequence[DossierPrompt], data: Encoded, seed: int
) -> int:
    """Put the pad token on every token of the chosen passages of ``data`` (rows = ``files``), in place,
    and the answer a file without its act has (``answer_without``) in place of its target; returns
    how many passages were blanked. Token spans come from the tokenizer's offsets, as the audit's
    players do."""
    rng = random.Random(f"interaction-auditor/testbed/dossier/absent/{seed}/{len(files)}")
    offsets = tokenizer([f.prompt for f in files], add_special_tokens=True, return_offsets_mapping=True)["offset_mapping"]
    no_charge = answer_token_id(tokenizer, NO_CHARGE)
    blanked = 0
    for row, (file, spans) in enumerate(zip(files, offsets)):
        absent = absent_passages(file, rng)
        for index in absent:
            passage = file.passages[index]
            tokens = [t for t, (a, b) in enumerate(spans) if b > a and a >= passage.start and b <= passage.end]
            data.ids[row, torch.tensor(tokens)] = tokenizer.pad_token_id
            blanked += 1
        if answer_without(file, absent, "") == NO_CHARGE:
            data.ids[row, int(data.lengths[row]) - 1] = no_charge
            data.answer_ids[row] = no_charge
    return blanked
