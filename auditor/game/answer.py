"""The answer being audited: greedy generation, or the caller's text or token ids, cut to K tokens.

Generation is a plain greedy loop, not ``generate``, so no generation-config default (sampling,
penalties) can change which answer is audited.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import DynamicCache


def accepts_argument(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, (list, tuple)):
        ids.update(int(e) for e in eos)
    return ids


def generate_greedy(model: Any, tokenizer: Any, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
    """Greedy answer tokens, stopping before EOS.

    The EOS token is kept only when it is the whole answer (there must be something to score).
    Written as a plain loop, not ``generate``, so no generation-config default (sampling, penalties)
    can change which answer is audited.
    """
    device = model.get_input_embeddings().weight.device
    eos = eos_ids(model, tokenizer)
    keep = {"logits_to_keep": 1} if accepts_argument(model.forward, "logits_to_keep") else {}
    cache = DynamicCache(config=model.config)
    out_ids: list[int] = []
    step = torch.tensor([list(prompt_ids)], device=device)
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            logits = model(input_ids=step, past_key_values=cache, use_cache=True, **keep).logits
            token = int(logits[0, -1].float().argmax())
            if token in eos:
                if not out_ids:
                    out_ids.append(token)
                break
            out_ids.append(token)
            step = torch.tensor([[token]], device=device)
    return out_ids


def answer_token_ids(
    model: Any, tokenizer: Any, prompt_ids: Sequence[int], answer: str | Sequence[int] | None, k: int
) -> list[int]:
    if answer is None:
        ids = generate_greedy(model, tokenizer, prompt_ids, k)
    elif isinstance(answer, str):
        ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    else:
        ids = [int(i) for i in answer]
    if not ids:
        raise ValueError("the answer is empty: nothing to score")
    vocab = model.get_input_embeddings().weight.shape[0]
    if any(not 0 <= i < vocab for i in ids):
        raise ValueError("answer token ids fall outside the model's vocabulary")
    return ids[:k]
