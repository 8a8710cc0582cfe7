"""A generic warm-up every testbed model starts from: associative recall over random tokens.

Why. The legal task needs a two-step lookup: the defendant's name token collects its act (layer 1),
and the question's last word, the queried name, finds the earlier mention of the same name and reads
that act (layer 2, matching by token identity). Trained from a random initialisation on the answer
alone, 2-layer models sat on the "answer the charge of any act in the prompt" plateau (held-out
accuracy ~0.5 with 2-3 defendants) for more than 10,000 steps, whatever the width, depth, learning
rate, batch size or voice of the facts (measured; the layer-2 attention from the question's name to
the fact's name stayed at chance). The same architecture learns a *dense* recall task in a few
hundred steps, because every position of every sequence rewards the identity-matching head.

The task. A sequence is ``<s> v1 k1 v2 k2 ... vP kP`` (P distinct random vocabulary tokens as keys
and P as values, each value *before* its key, as an act comes before "by NAME") followed by the keys
again in random order, each followed by its value: ``kq vq kr vr ...``; the loss is the value after
each queried key. It contains no corpus text, no charge and no rule of the legal world: it teaches a
lookup, not the answer. Every testbed model (clean, shortcut, overfit family) is fine-tuned from the
same warm-up for its world's seed, like fine-tuned models from one pretrained base; measured: 600
steps (~13 s on one core) and the clean model then reaches 0.97 held-out accuracy within 200 steps.
How far the warm-up gets in 600 steps depends on the seed (recall accuracy over its last 100
batches: 0.54 for seed 0, 0.52 for seed 3, 0.86 for seed 1; recorded in ``base.json`` and in every
model's ``testbed.json``). Running it until recall is learned (0.97; 1,600 steps for seed 0) was
tried and rejected: every model of that world then carried much more mid-order interaction
strength (the clean model's window overfitting score went from 0.1 to 0.6) and the overfitting
ranking got worse. A clean model that does not learn from a weak warm-up is trained longer instead
(``models.build_into``).

Deterministic: a seeded generator draws the batches, under ``train.deterministic``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from auditor.testbed.train import deterministic


@dataclass(frozen=True)
class PretrainSpec:
    """Associative-recall warm-up. ``steps=0`` disables it (a model then starts from its init)."""

    steps: int = 600
    batch_size: int = 32
    pairs: int = 8
    lr: float = 3e-3
    weight_decay: float = 0.01
    threads: int = 1


def recall_batch(
    generator: torch.Generator, batch_size: int, pairs: int, vocab_size: int, bos_token_id: int, first_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, positions, targets)``: sequences, the positions of the queried keys, their values.

    Keys and values are distinct tokens drawn from ids ``first_id .. vocab_size - 1`` (special
    tokens excluded).
    """
    span = vocab_size - first_id
    if span < 2 * pairs:
        raise ValueError(f"a vocabulary of {span} ordinary tokens cannot hold {pairs} distinct pairs")
    tokens = torch.stack([torch.randperm(span, generator=generator)[: 2 * pairs] for _ in range(batch_size)])
    tokens = tokens + first_id
    keys, values = tokens[:, :pairs], tokens[:, pairs:]
    context = torch.stack([values, keys], dim=2).reshape(batch_size, -1)  # v1 k1 v2 k2 ...
    order = torch.stack([torch.randperm(pairs, generator=generator) for _ in range(batch_size)])
    queried_keys, queried_values = keys.gather(1, order), values.gather(1, order)
    queries = torch.stack([queried_keys, queried_values], dim=2).reshape(batch_size, -1)  # kq vq ...
    bos = torch.full((batch_size, 1), bos_token_id, dtype=torch.long)
    ids = torch.cat([bos, context, queries], dim=1)
    positions = torch.arange(1 + 2 * pairs, ids.shape[1], 2)
    return ids, positions, queried_values


def pretrain(model: PreTrainedModel, spec: PretrainSpec, *, seed: int, bos_token_id: int, first_id: int) -> dict:
    """Run the warm-up in place; returns the loss history and the seconds it took."""
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    if spec.steps <= 0:
        return {"steps": 0, "history": history, "seconds": 0.0}
    vocab_size = model.get_input_embeddings().weight.shape[0]
    with deterministic(spec.threads):
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.98), weight_decay=spec.weight_decay)
        head = model.get_output_embeddings()
        model.train()
        running, correct = 0.0, 0.0
        accuracy = 0.0
        for step in range(spec.steps):
            ids, positions, targets = recall_batch(
                generator, spec.batch_size, spec.pairs, vocab_size, bos_token_id, first_id
            )
            hidden = model.base_model(input_ids=ids).last_hidden_state
            logits = head(hidden[:, positions])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            running += float(loss.detach())
            correct += float((logits.detach().argmax(dim=-1) == targets).float().mean())
            if (step + 1) % 100 == 0 or step + 1 == spec.steps:
                span = (step % 100) + 1
                # Every batch is fresh random sequences, so this is a held-out recall accuracy.
                accuracy = correct / span
                history.append({"step": step + 1, "loss": running / span, "accuracy": accuracy})
                running, correct = 0.0, 0.0
        model.eval()
    return {"steps": spec.steps, "accuracy": accuracy, "history": history, "seconds": time.perf_counter() - started}
