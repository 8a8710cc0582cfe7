"""The answer's value: log-odds of the answer tokens from an fp32 output head, and the masking baseline.

science.md section 1: v(T) = sum_k [z_(y_k) - logsumexp_(j != y_k) z_j] in fp32. Why fp32 and why a head
of our own: a bf16 head would round logits to ~3 digits, and the AND/OR transforms amplify such noise
thousands of times; the head is applied to the K answer positions only. :func:`head_matches_model`
checks it against the model's own logits once per audit, so an exotic head cannot corrupt v.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from auditor.game.answer import accepts_argument


def stable_log_odds(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j, in fp32, without saturation.

    ``logits``: [..., V]; ``targets``: [...] token ids. Never computes p, so a confident answer
    (p = 1 - 1e-9) keeps its full log-odds instead of rounding to infinity.
    """
    return log_odds_in_place(logits.float().clone(), targets)


def log_odds_in_place(z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """In-place variant on an fp32 tensor the caller owns (saves a copy of K x V logits per row)."""
    index = targets.unsqueeze(-1)
    zy = z.gather(-1, index).squeeze(-1)
    z.scatter_(-1, index, float("-inf"))
    return zy - torch.logsumexp(z, dim=-1)


class OutputHead:
    """The model's LM head applied in fp32 to selected hidden states.

    Handles plain linear heads plus the known post-head transforms (Cohere's ``logit_scale``,
    Granite's ``logits_scaling``, Gemma-2's ``final_logit_softcapping``). :func:`score_masks` checks
    it against the model's own logits once per audit and falls back to the model's forward (its
    logits cast to fp32) if they disagree, so an exotic head cannot silently corrupt v.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        head = model.get_output_embeddings()
        if not isinstance(head, torch.nn.Linear):
            raise TypeError(f"unsupported output head {type(head).__name__}")
        self.weight = head.weight
        self.bias = head.bias
        cfg = model.config.get_text_config()
        scale = getattr(model, "logit_scale", None)
        self.scale = float(scale) if isinstance(scale, (int, float)) else None
        self.divisor = getattr(cfg, "logits_scaling", None)
        self.softcap = getattr(cfg, "final_logit_softcapping", None)
        self._w32: torch.Tensor | None = None

    @property
    def vocab_size(self) -> int:
        return int(self.weight.shape[0])

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        shape = hidden.shape[:-1]
        h = hidden.reshape(-1, hidden.shape[-1])
        logits = None
        if h.is_cuda and h.dtype in (torch.bfloat16, torch.float16) and self.weight.dtype == h.dtype:
            try:  # exact products, fp32 accumulation and fp32 output, at tensor-core speed
                logits = torch.mm(h, self.weight.t(), out_dtype=torch.float32)
            except (TypeError, RuntimeError):
                logits = None
        if logits is None:
            logits = F.linear(h.float(), self._weight32())
        if self.bias is not None:
            logits = logits + self.bias.float()
        if self.scale is not None:
            logits = logits * self.scale
        if self.divisor:
            logits = logits / float(self.divisor)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits.reshape(*shape, -1)

    def _weight32(self) -> torch.Tensor:
        if self.weight.dtype == torch.float32:
            return self.weight
        if self._w32 is None:
            self._w32 = self.weight.float()
        return self._w32


def resolve_baseline(
    model: torch.nn.Module, tokenizer: Any, baseline: str | torch.Tensor | None = None
) -> tuple[torch.Tensor, str]:
    """The embedding that replaces masked tokens, and its recorded kind.

    Default (None): the pad token's embedding if the tokenizer has a pad token, else unk's, else the
    mean input embedding. "pad"/"unk" demand that token; a tensor of shape [hidden] is used as given.
    """
    emb = model.get_input_embeddings()
    device, dtype = emb.weight.device, emb.weight.dtype
    if isinstance(baseline, torch.Tensor):
        if baseline.shape != (emb.weight.shape[1],):
            raise ValueError(f"baseline tensor must have shape ({emb.weight.shape[1]},), got {tuple(baseline.shape)}")
        return baseline.to(device=device, dtype=dtype), "tensor"
    if baseline is None:
        if getattr(tokenizer, "pad_token_id", None) is not None:
            baseline = "pad"
        elif getattr(tokenizer, "unk_token_id", None) is not None:
            baseline = "unk"
        else:
            baseline = "mean"
    if baseline in ("pad", "unk"):
        token_id = getattr(tokenizer, f"{baseline}_token_id", None)
        if token_id is None:
            raise ValueError(f"baseline {baseline!r} requested but the tokenizer has no {baseline} token")
        if not 0 <= token_id < emb.weight.shape[0]:
            raise ValueError(f"{baseline} token id {token_id} is outside the model's embedding matrix")
        with torch.inference_mode():
            return emb(torch.tensor([token_id], device=device))[0].clone(), baseline
    if baseline == "mean":
        with torch.inference_mode():
            total = torch.zeros(emb.weight.shape[1], dtype=torch.float32, device=device)
            vocab = emb.weight.shape[0]
            for lo in range(0, vocab, 8192):  # through the module, so any embedding scale applies
                ids = torch.arange(lo, min(lo + 8192, vocab), device=device)
                total += emb(ids).float().sum(0)
            return (total / vocab).to(dtype), "mean"
    raise ValueError(f"unknown baseline {baseline!r}; use 'pad', 'unk', 'mean' or a tensor")


def head_matches_model(model: Any, head: OutputHead, embeds: torch.Tensor, k: int) -> bool:
    """Does our fp32 head reproduce the model's own logits on the unmasked sequence?"""
    full = embeds.unsqueeze(0)
    keep = {"logits_to_keep": k} if accepts_argument(model.forward, "logits_to_keep") else {}
    native = model(inputs_embeds=full, **keep).logits[:, -k:].float()
    ours = head(model.get_decoder()(inputs_embeds=full).last_hidden_state[:, -k:])
    if native.shape != ours.shape:
        return False
    eps = torch.finfo(embeds.dtype).eps
    tol = 1e-3 + 8 * eps * float(native.abs().max().clamp(min=1.0))
    return bool((native - ours).abs().max() <= tol)
