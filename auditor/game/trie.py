"""The masked forward passes: a shared prefix, then the mask tree level by level with KV caches.

Everything runs under ``torch.inference_mode``. Rows of a level extend their parent's KV cache (rows
gathered from it), depth first once a level exceeds one chunk, so at most about one cache per
oversubscribed level is alive. Which levels and how many rows per call is ``auditor.game.planning``'s
decision; the value of a finished row is ``auditor.game.value``'s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from auditor.game.answer import accepts_argument
from auditor.game.planning import LevelPlan
from auditor.game.value import OutputHead, log_odds_in_place

ProgressFn = Callable[[int, int], None]


def cache_is_gatherable(model: Any) -> bool:
    """Row-gathering a KV cache is only defined for plain attention layers (not recurrent states)."""
    cache = DynamicCache(config=model.config)
    if not cache.layers:
        return getattr(cache, "layer_class_to_replicate", None) is DynamicLayer
    return all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers)


def gather_rows(cache: DynamicCache, index: torch.Tensor) -> DynamicCache:
    """A new cache whose row r is row ``index[r]`` of ``cache`` (the parent stays untouched)."""
    new = copy.copy(cache)
    new.layers = []
    for layer in cache.layers:
        copied = copy.copy(layer)
        if layer.is_initialized and layer.keys is not None and layer.keys.numel():
            copied.keys = layer.keys.index_select(0, index)
            copied.values = layer.values.index_select(0, index)
        new.layers.append(copied)
    return new


class MaskedForward:
    """Scores masked versions of one teacher-forced sequence.

    ``units`` are token spans (start, end) of the units being switched; a row's ``present`` is a
    bool vector over units. Everything runs under ``torch.inference_mode``.
    """

    def __init__(
        self,
        model: Any,
        embeds: torch.Tensor,
        baseline: torch.Tensor,
        units: Sequence[tuple[int, int]],
        answer_ids: torch.Tensor,
        head: OutputHead | None,
        chunk_size: int,
        progress: ProgressFn | None = None,
    ) -> None:
        self.model = model
        self.decoder = model.get_decoder()
        self.embeds = embeds
        self.baseline = baseline
        self.units = list(units)
        self.answer_ids = answer_ids
        self.head = head
        self.chunk = chunk_size
        self.progress = progress
        self.seq_len = embeds.shape[0]
        self.k = answer_ids.shape[0]
        unit_of_token = torch.full((self.seq_len,), -1, dtype=torch.long, device=embeds.device)
        for u, (a, b) in enumerate(self.units):
            unit_of_token[a:b] = u
        self.unit_of_token = unit_of_token
        self.calls = 0
        self.tokens = 0
        self.total_tokens = 0

    # -- one forward --------------------------------------------------------------------------
    def _segment(self, present: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Input embeddings of tokens [start, end) for each row, masked units set to the baseline."""
        seg = self.embeds[start:end]
        owner = self.unit_of_token[start:end]
        keep = torch.ones(present.shape[0], end - start, dtype=torch.bool, device=seg.device)
        inside = owner >= 0
        keep[:, inside] = present[:, owner[inside]]
        return torch.where(keep.unsqueeze(-1), seg, self.baseline)

    def _count(self, rows: int, length: int) -> None:
        self.calls += 1
        self.tokens += rows * length
        if self.progress is not None:
            self.progress(self.tokens, self.total_tokens)

    def _extend(self, cache: DynamicCache, present: torch.Tensor, start: int, end: int) -> None:
        self.decoder(inputs_embeds=self._segment(present, start, end), past_key_values=cache, use_cache=True)
        self._count(present.shape[0], end - start)

    def _score(self, cache: DynamicCache | None, present: torch.Tensor, start: int) -> torch.Tensor:
        """Finish rows from ``start`` to the end and return their v (fp32, one per row)."""
        emb = self._segment(present, start, self.seq_len)
        rows = present.shape[0]
        if self.head is None:  # the model's own head (exotic heads): its logits cast to fp32
            keep = {"logits_to_keep": self.k} if accepts_argument(self.model.forward, "logits_to_keep") else {}
            logits = self.model(
                inputs_embeds=emb, past_key_values=cache, use_cache=cache is not None, **keep
            ).logits[:, -self.k:].float()
        else:
            hidden = self.decoder(
                inputs_embeds=emb, past_key_values=cache, use_cache=cache is not None
            ).last_hidden_state
            logits = self.head(hidden[:, -self.k:])
        self._count(rows, self.seq_len - start)
        return log_odds_in_place(logits, self.answer_ids.expand(rows, -1)).sum(-1)

    def _new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.model.config)

    def _prefix_cache(self, prefix_len: int) -> DynamicCache | None:
        if prefix_len == 0:
            return None
        cache = self._new_cache()
        one = torch.ones(1, len(self.units), dtype=torch.bool, device=self.embeds.device)
        self._extend(cache, one, 0, prefix_len)
        return cache

    def _rows_cache(self, cache: DynamicCache | None, index: torch.Tensor) -> DynamicCache | None:
        return None if cache is None else gather_rows(cache, index)

    # -- arbitrary rows (used for the auto-selection pass) --------------------------------------
    def score_rows(self, present: torch.Tensor) -> torch.Tensor:
        """v for each row of ``present`` [R, units]: shared prefix, then chunks of rows."""
        start = min(a for a, _ in self.units)
        rows = present.shape[0]
        self.total_tokens = start + rows * (self.seq_len - start)
        prefix = self._prefix_cache(start)
        out = torch.empty(rows, dtype=torch.float32, device=self.embeds.device)
        for lo in range(0, rows, self.chunk):
            hi = min(rows, lo + self.chunk)
            index = torch.zeros(hi - lo, dtype=torch.long, device=self.embeds.device)
            out[lo:hi] = self._score(self._rows_cache(prefix, index), present[lo:hi], start)
        return out

    # -- the full power set ---------------------------------------------------------------------
    def score_powerset(self, plan: LevelPlan, order: Sequence[int]) -> torch.Tensor:
        """v for all 2^n states in binary order (bit i = unit i). ``order[r]`` is the unit at
        position rank r; the plan's groups are lists of ranks."""
        device = self.embeds.device
        n = len(self.units)
        self.total_tokens = plan.tokens
        self._plan = plan
        self._levels = [[order[r] for r in g] for g in plan.groups]
        self._weights = (2 ** torch.arange(n, device=device)).long()
        self._out = torch.empty(2**n, dtype=torch.float32, device=device)
        root = torch.zeros(1, n, dtype=torch.bool, device=device)
        self._descend(0, [self._prefix_cache(plan.prefix_len)], root)
        return self._out

    def _descend(self, level: int, box: list[DynamicCache | None], parents: torch.Tensor) -> None:
        """Expand ``parents`` by all bit patterns of this level's units, in groups of ``chunk`` rows.

        The cache comes in a one-element list so that this frame holds the only reference and can
        drop it as soon as it is no longer needed (the parent of a single group is freed before the
        child level runs, which keeps at most ~one cache per oversubscribed level alive).
        """
        cache = box.pop()
        units = self._levels[level]
        start, end = self._plan.bounds[level]
        last = level == len(self._levels) - 1
        device = parents.device
        k = len(units)
        patterns = torch.arange(2**k, device=device)
        expand = torch.zeros(2**k, parents.shape[1], dtype=torch.bool, device=device)
        for b, u in enumerate(units):
            expand[:, u] = ((patterns >> b) & 1).bool()
        total = parents.shape[0] * 2**k
        group = min(total, self.chunk)
        n_groups = total // group
        for g in range(n_groups):
            rows = torch.arange(g * group, (g + 1) * group, device=device)
            parent_index = rows // 2**k
            present = parents[parent_index] | expand[rows % 2**k]
            if cache is None:
                child = None if last else self._new_cache()
            else:
                child = gather_rows(cache, parent_index)
                if n_groups == 1:
                    cache = None
            if last:
                index = (present.long() * self._weights).sum(-1)
                self._out[index] = self._score(child, present, start)
            else:
                self._extend(child, present, start, end)
                sub = [child]
                del child
                self._descend(level + 1, sub, present)
