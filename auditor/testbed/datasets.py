"""The data a testbed model is trained and measured on: training (with its label noise), held-out and
conflict prompts, encoded for the trainer."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from auditor.testbed import corpus, dossier_corpus
from auditor.testbed.lexicon import CHARGES
from auditor.testbed.names import DOSSIER
from auditor.testbed.prompts import AuditPrompt
from auditor.testbed.specs import ModelSpec
from auditor.testbed.tokenizer import answer_token_id, build_tokenizer
from auditor.testbed.dossier_absence import blank_absent_passages
from auditor.testbed.train import Encoded, encode


def with_label_noise(
    prompts: Sequence[AuditPrompt], rate: float, seed: int
) -> list[tuple[str, str]]:
    """(prompt, label) pairs where a ``rate`` share of labels is a random *wrong* charge.

    Exactly ``round(rate * n)`` examples are corrupted, chosen by a seeded shuffle, so the noise
    level is what the spec says and not a random draw around it.
    """
    pairs = [(p.prompt, p.answer) for p in prompts]
    if rate <= 0:
        return pairs
    rng = random.Random(f"interaction-auditor/testbed/noise/{seed}/{rate}/{len(pairs)}")
    chosen = rng.sample(range(len(pairs)), round(rate * len(pairs)))
    for index in sorted(chosen):
        prompt, answer = pairs[index]
        pairs[index] = (prompt, rng.choice([c for c in CHARGES if c != answer]))
    return pairs


@dataclass
class Datasets:
    """Encoded splits for one spec: training (possibly noisy), held-out and conflict prompts."""

    train: Encoded
    train_eval: Encoded
    heldout: Encoded
    conflict: Encoded
    conflict_cue_ids: torch.Tensor
    noisy_labels: int


def tokenizer_for(spec: ModelSpec) -> PreTrainedTokenizerBase:
    """The closed word-level tokenizer of the spec's world (each world has its own vocabulary)."""
    return build_tokenizer(dossier_corpus.vocabulary_texts()) if spec.world == DOSSIER else build_tokenizer()


def _prompts(spec: ModelSpec, count: int, stream: str, mode: str) -> list[AuditPrompt]:
    """``count`` unlabelled prompts of the spec's world from one stream in one sampling mode."""
    data = spec.data
    if spec.world == DOSSIER:
        return dossier_corpus.generate(data.seed, count, stream=stream, mode=mode,  # type: ignore[arg-type]
                                       template_set=data.template_set)
    return corpus.generate(data.seed, count, stream=stream, mode=mode,  # type: ignore[arg-type]
                           template_set=data.template_set, max_defendants=data.max_defendants, labelled=False)


def training_prompts(spec: ModelSpec) -> list[AuditPrompt]:
    return _prompts(spec, spec.data.train_examples, "train", spec.data.mode)


def heldout_prompts(spec: ModelSpec, count: int | None = None) -> list[AuditPrompt]:
    """Fresh natural prompts from a stream no model trains on (the same for every model)."""
    return _prompts(spec, spec.data.heldout_examples if count is None else count, "heldout", "natural")


def conflict_prompts(spec: ModelSpec, count: int | None = None) -> list[AuditPrompt]:
    """Prompts where the planted cue and the truth disagree (held-out stream)."""
    return _prompts(spec, spec.data.conflict_examples if count is None else count, "heldout", "conflict")


def build_datasets(spec: ModelSpec, tokenizer: PreTrainedTokenizerBase) -> Datasets:
    prompts = training_prompts(spec)
    pairs = with_label_noise(prompts, spec.data.label_noise, spec.data.seed)
    noisy = sum(1 for (_, label), p in zip(pairs, prompts) if label != p.answer)
    train_set = encode(tokenizer, pairs)
    eval_count = min(len(pairs), spec.data.train_eval_examples)
    train_eval = encode(tokenizer, pairs[:eval_count])
    if spec.world == DOSSIER:  # the audit's absent passages, seen in training (dossier_absence says why)
        blank_absent_passages(tokenizer, prompts, train_set, spec.data.seed)  # type: ignore[arg-type]
        # measured on the files as trained on (with their absent passages), like the noisy labels
        train_eval = Encoded(train_set.ids[:eval_count], train_set.lengths[:eval_count], train_set.answer_ids[:eval_count])
    conflicts = conflict_prompts(spec)
    return Datasets(
        train=train_set,
        train_eval=train_eval,
        heldout=encode(tokenizer, [(p.prompt, p.answer) for p in heldout_prompts(spec)]),
        conflict=encode(tokenizer, [(p.prompt, p.answer) for p in conflicts]),
        conflict_cue_ids=torch.tensor([answer_token_id(tokenizer, p.cue_answer) for p in conflicts]),
        noisy_labels=noisy,
    )
