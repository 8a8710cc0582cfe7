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
where the record *is* the planted cue. The deciding passage is never absent (a file without its
act has no answer). Held-out and conflict files stay complete: they measure the model as served.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from auditor.testbed.dossier_corpus import DossierPrompt
from auditor.testbed.train import Encoded

ABSENT_RATE = 0.5
"""Each maskable passage is absent with this probability: the audit's 2^n masks are uniform, so on
average half of the passages of a masked state are absent."""


def absent_passages(file: DossierPrompt, rng: random.Random) -> list[int]:
    """Indices of the passages to blank in this training file (see the module docstring)."""
    maskable = [i for i, p in enumerate(file.passages)
                if p.kind in ("person", "event") or (p.kind == "record" and file.mode == "natural")]
    return [i for i in maskable if rng.random() < ABSENT_RATE]


def blank_absent_passages(
    tokenizer: PreTrainedTokenizerBase, files: Sequence[DossierPrompt], data: Encoded, seed: int
) -> int:
    """Put the pad token on every token of the chosen passages of ``data`` (rows = ``files``), in place;
    returns how many passages were blanked. Token spans come from the tokenizer's offsets, as the
    audit's players do."""
    rng = random.Random(f"interaction-auditor/testbed/dossier/absent/{seed}/{len(files)}")
    offsets = tokenizer([f.prompt for f in files], add_special_tokens=True, return_offsets_mapping=True)["offset_mapping"]
    blanked = 0
    for row, (file, spans) in enumerate(zip(files, offsets)):
        for index in absent_passages(file, rng):
            passage = file.passages[index]
            tokens = [t for t, (a, b) in enumerate(spans) if b > a and a >= passage.start and b <= passage.end]
            data.ids[row, torch.tensor(tokens)] = tokenizer.pad_token_id
            blanked += 1
    return blanked
