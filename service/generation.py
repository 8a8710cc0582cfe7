"""Text generation with a transformers causal LM, for the LLM service (no bentoml here).

:class:`Generator` renders prompts (plain or chat), checks them against the limits, and generates
greedily or by sampling, optionally streaming token ids to a callback. It reports what the sampler
and the auditor need afterwards: the answer's token ids, its text, and a cheap confidence signal
(the geometric mean of the chosen tokens' probabilities under the model's unprocessed
distribution, i.e. ``exp(mean log p)``, in [0, 1]).

Generation is blocking and runs in a worker thread of the service (never on the event loop).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from auditor import LoadedModel
from auditor.game.loading import context_limit

__all__ = ["Generator", "Generation", "RenderedRequest", "RequestError"]


class RequestError(ValueError):
    """A request the service rejects with HTTP 400; ``field`` names the offending field."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass
class RenderedRequest:
    """The exact text and token ids the model is given."""

    text: str
    input_ids: list[int]
    prompt: str | None = None  # the plain prompt, for plain requests
    messages: list[dict[str, str]] | None = None  # the chat messages, for chat requests
    chat_template: bool = False  # rendered with the tokenizer's chat template


@dataclass
class Generation:
    prompt_tokens: int
    answer_ids: list[int]
    text: str
    finish_reason: str  # "stop" (end of sequence or stop string) or "length"
    confidence: float | None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def completion_tokens(self) -> int:
        return len(self.answer_ids)


class _TokenStreamer:
    """A transformers streamer that forwards each new token id to ``on_token`` (skips the prompt)."""

    def __init__(self, on_token: Callable[[int], None]) -> None:
        self.on_token = on_token
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.on_token(int(token))

    def end(self) -> None:
        pass


class _StopCriteria:
    """Stops on a stop string in the decoded answer or when ``cancel`` is set (client went away)."""

    def __init__(self, tokenizer: Any, prompt_len: int, stops: Sequence[str], cancel: threading.Event | None):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stops = [s for s in stops if s]
        self.cancel = cancel
        self.hit = False

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        stop = False
        if self.cancel is not None and self.cancel.is_set():
            stop = True
        elif self.stops:
            text = self.tokenizer.decode(input_ids[0, self.prompt_len :], skip_special_tokens=True)
            if any(s in text for s in self.stops):
                self.hit = stop = True
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class Generator:
    def __init__(self, loaded: LoadedModel, *, max_prompt_chars: int, max_new_tokens_limit: int) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.max_prompt_chars = max_prompt_chars
        self.max_new_tokens_limit = max_new_tokens_limit
        self.context = context_limit(self.model)
        tok = self.tokenizer
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = tok.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (min(self.eos_ids) if self.eos_ids else 0)
        self.device = next(self.model.parameters()).device

    # ---- rendering ----------------------------------------------------------------------------
    def _check_text(self, field: str, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise RequestError(field, "must be a non-empty string")
        if len(text) > self.max_prompt_chars:
            raise RequestError(field, f"is {len(text)} characters long; the limit is {self.max_prompt_chars}")

    def render_prompt(self, prompt: str, field: str = "prompt") -> RenderedRequest:
        self._check_text(field, prompt)
        ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        return RenderedRequest(text=prompt, input_ids=list(ids), prompt=prompt)

    def render_chat(self, messages: Sequence[dict[str, str]], field: str = "messages") -> RenderedRequest:
        if not messages:
            raise RequestError(field, "must hold at least one message")
        total = 0
        for i, m in enumerate(messages):
            content = m.get("content")
            if not isinstance(content, str):
                raise RequestError(f"{field}[{i}].content", "must be a string")
            total += len(content)
        if total > self.max_prompt_chars:
            raise RequestError(field, f"hold {total} characters; the limit is {self.max_prompt_chars}")
        if not any(m.get("role") == "user" and m.get("content", "").strip() for m in messages):
            raise RequestError(field, "need at least one non-empty user message")
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if getattr(self.tokenizer, "chat_template", None):
            try:
                text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            except Exception as e:  # a template that rejects the roles or their order
                raise RequestError(field, f"the model's chat template rejected them: {e}") from e
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            return RenderedRequest(text=text, input_ids=list(ids), messages=msgs, chat_template=True)
        # No chat template: a plain transcript, audited as a plain prompt.
        text = "\n".join(f"{m['role']}: {m['content']}" for m in msgs) + "\nassistant:"
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return RenderedRequest(text=text, input_ids=list(ids), prompt=text)

    def check_budget(self, rendered: RenderedRequest, max_new_tokens: int, field: str = "max_new_tokens") -> None:
        if max_new_tokens < 1:
            raise RequestError(field, "must be at least 1")
        if max_new_tokens > self.max_new_tokens_limit:
            raise RequestError(field, f"is {max_new_tokens}; the limit is {self.max_new_tokens_limit}")
        if self.context is not None and len(rendered.input_ids) + max_new_tokens > self.context:
            raise RequestError(
                "prompt" if rendered.messages is None else "messages",
                f"is {len(rendered.input_ids)} tokens; with {field}={max_new_tokens} it exceeds the model's "
                f"context of {self.context} tokens",
            )

    # ---- generation ---------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self,
        rendered: RenderedRequest,
        max_new_tokens: int,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: Sequence[str] = (),
        on_token: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        import time

        t0 = time.perf_counter()
        input_ids = torch.tensor([rendered.input_ids], dtype=torch.long, device=self.device)
        attention = torch.ones_like(input_ids)
        do_sample = temperature is not None and temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            "pad_token_id": self.pad_id,
            "output_logits": True,
            "return_dict_in_generate": True,
        }
        if do_sample:
            kwargs["temperature"] = float(temperature)
            if top_p is not None:
                kwargs["top_p"] = float(top_p)
            if seed is not None:
                torch.manual_seed(int(seed))
        else:  # greedy: neutralise sampling settings a checkpoint's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.eos_ids:
            kwargs["eos_token_id"] = sorted(self.eos_ids)
        criteria = _StopCriteria(self.tokenizer, input_ids.shape[1], stop, cancel)
        if criteria.stops or cancel is not None:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList([criteria])
        if on_token is not None:
            kwargs["streamer"] = _TokenStreamer(on_token)
        out = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        new = out.sequences[0, input_ids.shape[1] :].tolist()
        logits = out.logits or ()
        answer: list[int] = []
        logps: list[float] = []
        finish = "length"
        for i, tok in enumerate(new):
            if tok in self.eos_ids:
                finish = "stop"
                break
            answer.append(int(tok))
            if i < len(logits):
                row = logits[i][0].float()
                logps.append(float(row[tok] - torch.logsumexp(row, dim=-1)))
        text = self.tokenizer.decode(answer, skip_special_tokens=True)
        if criteria.stops:
            cut = min((text.find(s) for s in criteria.stops if s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        confidence = math.exp(sum(logps) / len(logps)) if logps else None
        return Generation(
            prompt_tokens=input_ids.shape[1],
            answer_ids=answer,
            text=text,
            finish_reason=finish,
            confidence=confidence,
            seconds=time.perf_counter() - t0,
        )


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas for streaming.

    Holds back an incomplete UTF-8 sequence and, with stop strings, the last ``len(stop) - 1``
    characters (they might be the start of a stop string, which is never sent)."""

    def __init__(self, tokenizer: Any, eos_ids: set[int], stops: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.stops = [s for s in stops if s]
        self.holdback = max((len(s) for s in self.stops), default=1) - 1
        self.ids: list[int] = []
        self.sent = ""
        self.finished = False

    def _emit(self, text: str, final: bool) -> str:
        if not text.startswith(self.sent):  # a tokenizer that re-spaces earlier text
            return ""
        upto = len(text) if final else max(len(self.sent), len(text) - self.holdback)
        delta, self.sent = text[len(self.sent) : upto], text[:upto]
        return delta

    def push(self, token: int) -> str:
        if self.finished:
            return ""
        if token in self.eos_ids:
            self.finished = True
            return self._emit(self.tokenizer.decode(self.ids, skip_special_tokens=True), True)
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        cut = min((text.find(s) for s in self.stops if s in text), default=-1)
        if cut >= 0:
            self.finished = True
            return self._emit(text[:cut], True)
        return self._emit(text, False)

    def flush(self, final_text: str) -> str:
        """What is left of ``final_text`` (the generation's final, stop-truncated text) to send."""
        return self._emit(final_text, True)
