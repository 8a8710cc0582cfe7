"""Deterministic CPU training and evaluation of small causal LMs on (prompt, answer) pairs.

Objective: cross-entropy on the answer token and the ``</s>`` that follows it, not on the prompt.
Why: in this corpus every prompt word is drawn uniformly at random, so its next-token loss is
irreducible entropy that teaches nothing about the rule, costs most of the gradient signal and would
dominate the measured loss; the audit scores exactly the answer's log-odds, and the generalization
gap the overfitting metric is judged on is the gap of the answer's loss. Training the ``</s>`` too
makes a served testbed model stop after its one-word answer.

Determinism: a fixed seed for initialisation and batch order, ``torch.use_deterministic_algorithms``,
a fixed thread count (float reductions depend on how work is split between threads) and full-batch
float32 maths; the same spec on the same torch build gives bit-identical weights. The global torch
state is restored afterwards, so callers (tests, services) are not affected.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel
from transformers import PreTrainedTokenizerBase

from auditor.testbed.tokenizer import answer_token_id

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ArchSpec:
    """Transformer shape. Llama (RoPE, RMSNorm, SwiGLU) or GPT-2 (learned positions, LayerNorm)."""

    family: Literal["llama", "gpt2"] = "llama"
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    intermediate: int = 256
    max_positions: int = 128
    init_std: float = 0.02


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation settings. ``steps`` is fixed, so a smaller data set means more epochs."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    seed: int = 0
    threads: int = 1
    lm_weight: float = 0.0


@contextlib.contextmanager
def deterministic(threads: int = 2) -> Iterator[None]:
    """Run a block with deterministic algorithms, a fixed thread count and subnormal floats
    flushed to zero, then restore them (flushing back to torch's default, off).

    Why flush: weight decay over a long warm-up leaves weights and gradients in the subnormal range,
    which x86 CPUs compute in microcode. Measured with a 1,600-step warm-up (tried for seed 0, see
    pretrain.py): 60 training steps took 7.1 s instead of 4.0 s, the whole build 640 CPU-s instead
    of ~360. With the 600-step warm-up it changes neither the speed nor a single weight (seed 0).
    Flushing is deterministic, so the builds stay reproducible.
    """
    previous_threads = torch.get_num_threads()
    previous_det = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)
        torch.set_num_threads(previous_threads)


def model_config(arch: ArchSpec, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig | GPT2Config:
    """A transformers config for ``arch`` with the tokenizer's vocabulary and special tokens."""
    common: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=arch.init_std,
    )
    if arch.family == "llama":
        return LlamaConfig(
            hidden_size=arch.hidden,
            intermediate_size=arch.intermediate,
            num_hidden_layers=arch.layers,
            num_attention_heads=arch.heads,
            num_key_value_heads=arch.heads,
            max_position_embeddings=arch.max_positions,
            rms_norm_eps=1e-5,
            **common,
        )
    if arch.family == "gpt2":
        return GPT2Config(
            n_embd=arch.hidden,
            n_layer=arch.layers,
            n_head=arch.heads,
            n_inner=arch.intermediate,
            n_positions=arch.max_positions,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **common,
        )
    raise ValueError(f"unknown architecture family {arch.family!r}")


def init_model(arch: ArchSpec, tokenizer: PreTrainedTokenizerBase, seed: int) -> PreTrainedModel:
    """A freshly initialised model; the seed alone fixes every weight."""
    config = model_config(arch, tokenizer)
    torch.manual_seed(seed)
    cls = LlamaForCausalLM if arch.family == "llama" else GPT2LMHeadModel
    model = cls(config)
    model.to(torch.float32)
    return model


@dataclass
class Encoded:
    """(prompt, answer) pairs as one right-padded tensor: ``ids[i, :lengths[i]]`` is the prompt
    (with ``<s>``) followed by the answer token; ``answer_ids[i]`` is the target."""

    ids: torch.Tensor
    lengths: torch.Tensor
    answer_ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def encode(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]]
) -> Encoded:
    """Tokenize prompts as a served model sees them (special tokens added) and append the answer."""
    prompts = tokenizer([prompt for prompt, _ in pairs], add_special_tokens=True)["input_ids"]
    cache: dict[str, int] = {}
    answers = []
    for _, answer in pairs:
        if answer not in cache:
            cache[answer] = answer_token_id(tokenizer, answer)
        answers.append(cache[answer])
    width = max(len(ids) for ids in prompts) + 1
    ids = torch.full((len(pairs), width), tokenizer.pad_token_id, dtype=torch.long)
    for row, (prompt_ids, answer) in enumerate(zip(prompts, answers)):
        ids[row, : len(prompt_ids)] = torch.tensor(prompt_ids)
        ids[row, len(prompt_ids)] = answer
    lengths = torch.tensor([len(p) + 1 for p in prompts], dtype=torch.long)
    return Encoded(ids=ids, lengths=lengths, answer_ids=torch.tensor(answers, dtype=torch.long))


def _answer_logits(
    model: PreTrainedModel, ids: torch.Tensor, lengths: torch.Tensor, with_eos: bool
) -> torch.Tensor:
    """Logits at the position predicting the answer (and, with ``with_eos``, the next one).

    Right padding plus causal attention means no position before a row's end sees padding, so no
    attention mask is needed; only the gathered rows go through the output layer.
    """
    width = int(lengths.max())
    hidden = model.base_model(input_ids=ids[:, :width]).last_hidden_state
    rows = torch.arange(ids.shape[0])
    positions = [lengths - 2, lengths - 1] if with_eos else [lengths - 2]
    picked = torch.stack([hidden[rows, pos] for pos in positions], dim=1)
    return model.get_output_embeddings()(picked)


def _loss(
    model: PreTrainedModel,
    ids: torch.Tensor,
    lengths: torch.Tensor,
    answers: torch.Tensor,
    eos_token_id: int,
    spec: TrainSpec,
) -> torch.Tensor:
    """Answer (+ ``</s>``) cross-entropy, plus ``lm_weight`` times the prompt's next-token loss."""
    width = int(lengths.max())
    hidden = model.base_model(input_ids=ids[:, :width]).last_hidden_state
    head = model.get_output_embeddings()
    rows = torch.arange(ids.shape[0])
    picked = torch.stack([hidden[rows, lengths - 2], hidden[rows, lengths - 1]], dim=1)
    targets = torch.stack([answers, torch.full_like(answers, eos_token_id)], dim=1)
    logits = head(picked)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    if spec.lm_weight > 0:
        # Next-token loss inside the prompt (positions 0 .. length-3 predict tokens 1 .. length-2).
        positions = torch.arange(width - 1)
        inside = positions[None, :] < (lengths[:, None] - 2)
        lm_logits = head(hidden[:, :-1][inside])
        lm_targets = ids[:, 1:width][inside]
        loss = loss + spec.lm_weight * torch.nn.functional.cross_entropy(lm_logits, lm_targets)
    return loss


def _lr_factor(step: int, spec: TrainSpec) -> float:
    if step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(
    model: PreTrainedModel,
    data: Encoded,
    spec: TrainSpec,
    eos_token_id: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train in place with AdamW and a warm-up + cosine schedule; returns a short history."""
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    with deterministic(spec.threads):
        generator = torch.Generator().manual_seed(spec.seed)
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=spec.lr,
            betas=(0.9, 0.98),
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, spec))
        batch = min(spec.batch_size, len(data))
        order = torch.randperm(len(data), generator=generator)
        cursor = 0
        model.train()
        running = 0.0
        for step in range(spec.steps):
            if cursor + batch > len(order):
                order = torch.randperm(len(data), generator=generator)
                cursor = 0
            index = order[cursor : cursor + batch]
            cursor += batch
            loss = _loss(model, data.ids[index], data.lengths[index], data.answer_ids[index], eos_token_id, spec)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            running += float(loss.detach())
            if (step + 1) % 100 == 0 or step + 1 == spec.steps:
                span = (step % 100) + 1
                history.append({"step": step + 1, "loss": running / span})
                if progress is not None:
                    progress(f"step {step + 1}/{spec.steps} loss {running / span:.4f}")
                running = 0.0
        model.eval()
    return {
        "seconds": time.perf_counter() - started,
        "epochs": spec.steps * batch / len(data),
        "history": history,
        "spec": asdict(spec),
    }


@torch.no_grad()
def evaluate_encoded(
    model: PreTrainedModel, data: Encoded, batch_size: int = 256, threads: int = 2
) -> dict[str, Any]:
    """Accuracy (argmax over the whole vocabulary equals the answer) and mean answer loss (nats).

    ``predictions`` holds the argmax token ids, so callers can score other targets (the cue).
    """
    was_training = model.training
    model.eval()
    losses, predictions = [], []
    with deterministic(threads):
        for start in range(0, len(data), batch_size):
            rows = slice(start, start + batch_size)
            logits = _answer_logits(model, data.ids[rows], data.lengths[rows], with_eos=False)[:, 0]
            logits = logits.float()
            losses.append(torch.nn.functional.cross_entropy(logits, data.answer_ids[rows], reduction="none"))
            predictions.append(logits.argmax(dim=-1))
    model.train(was_training)
    loss = torch.cat(losses)
    predicted = torch.cat(predictions)
    return {
        "accuracy": float((predicted == data.answer_ids).float().mean()),
        "loss": float(loss.mean()),
        "count": len(data),
        "predictions": predicted,
    }
