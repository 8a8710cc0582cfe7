"""Fast unit tests of the serving pieces that need no server: generation, streaming deltas, the
post-answer hook (sampling + fire-and-forget hand-off), request schemas."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest
from pydantic import ValidationError

from auditor.game.loading import LoadedModel, ModelLoadError, load_model
from auditor.runtime.settings import AuditorSettings
from service.generation import Generator, IncrementalDecoder, RequestError
from service.schemas import AuditHints, ChatCompletionRequest, CompletionRequest, error_field

PROMPT = "The defendant Alice stole a bicycle from the shop"


@pytest.fixture(scope="module")
def generator():
    from tests.tiny_models import build_model, build_tokenizer

    tok = build_tokenizer()
    model = build_model("llama", tok)
    return Generator(LoadedModel(model, tok, "tiny", None, None, "cpu", "float32"),
                     max_prompt_chars=200, max_new_tokens_limit=32)


def test_limits_name_the_field(generator):
    with pytest.raises(RequestError) as e:
        generator.render_prompt("x" * 201)
    assert e.value.field == "prompt" and "200" in e.value.message
    with pytest.raises(RequestError) as e:
        generator.render_prompt("   ")
    assert e.value.field == "prompt"
    rendered = generator.render_prompt(PROMPT)
    for n, field in ((0, "max_new_tokens"), (33, "max_new_tokens")):
        with pytest.raises(RequestError) as e:
            generator.check_budget(rendered, n)
        assert e.value.field == field
    with pytest.raises(RequestError) as e:
        generator.render_chat([{"role": "system", "content": "be brief"}])
    assert e.value.field == "messages" and "user" in e.value.message


def test_greedy_generation_streams_the_same_tokens(generator):
    rendered = generator.render_prompt(PROMPT)
    streamed: list[int] = []
    a = generator.generate(rendered, 8, on_token=streamed.append)
    b = generator.generate(rendered, 8)
    assert a.answer_ids == b.answer_ids and a.text == b.text  # deterministic
    assert streamed[: len(a.answer_ids)] == a.answer_ids
    assert a.prompt_tokens == len(rendered.input_ids) and 0 < a.confidence <= 1
    decoder = IncrementalDecoder(generator.tokenizer, generator.eos_ids)
    text = "".join(decoder.push(t) for t in streamed) + decoder.flush(a.text)
    assert text == a.text


def test_stop_strings_are_never_streamed(generator):
    rendered = generator.render_prompt(PROMPT)
    full = generator.generate(rendered, 12)
    assert len(full.text) > 3
    stop = full.text[2:4]
    cut = generator.generate(rendered, 12, stop=[stop])
    assert cut.text == full.text[: full.text.find(stop)] and cut.finish_reason == "stop"
    streamed: list[int] = []
    generator.generate(rendered, 12, stop=[stop], on_token=streamed.append)
    decoder = IncrementalDecoder(generator.tokenizer, generator.eos_ids, [stop])
    text = "".join(decoder.push(t) for t in streamed) + decoder.flush(cut.text)
    assert text == cut.text and stop not in text


def test_cancel_stops_generation(generator):
    cancel = threading.Event()
    cancel.set()
    out = generator.generate(generator.render_prompt(PROMPT), 30, cancel=cancel)
    assert out.completion_tokens <= 1


def test_chat_rendering_uses_the_template(generator):
    r = generator.render_chat([{"role": "user", "content": "What is the capital of France?"}])
    assert r.chat_template and r.messages and r.prompt is None
    assert r.text.startswith("<s><|user|>What is the capital of France?")


# ------------------------------------------------------------------------------------------------
# The post-answer hook
# ------------------------------------------------------------------------------------------------
class _Tel:
    def __init__(self):
        self.sampling, self.drops, self.errors = Counter(), Counter(), Counter()

    def record_sampling(self, d):
        self.sampling[d.reason] += 1

    def record_drop(self, r):
        self.drops[r] += 1

    def record_error(self, s):
        self.errors[s] += 1


class _FakeAuditor:
    def __init__(self, behaviour="ok"):
        self.jobs = []
        self.behaviour = behaviour
        outer = self

        class _Async:
            async def submit(self, job):
                if outer.behaviour == "raise":
                    raise ConnectionError("auditor down")
                if outer.behaviour == "slow":
                    await asyncio.sleep(10)
                outer.jobs.append(job)
                return {"accepted": True, "reason": "queued", "queue_depth": 1}

        self.to_async = _Async()


def _hook(**kw):
    from service.hook import AuditHook

    kw.setdefault("sampling_key", "unit-test-key")  # no key kept in a store file for unit tests
    hook = AuditHook(AuditorSettings(low_confidence_threshold=None, max_audits_per_minute=None,
                                     handoff_timeout_s=0.2, **kw))
    hook.telemetry = _Tel()
    return hook


async def _settle(hook):
    for _ in range(400):  # a hand-off waits its deadline plus a margin for the reply (hook._handoff)
        if not hook.inflight:
            return
        await asyncio.sleep(0.01)


def test_hook_samples_and_hands_off_without_waiting():
    async def main():
        hook, auditor = _hook(sample_rate=1.0), _FakeAuditor("slow")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await hook.after_answer(auditor, "r1", prompt=PROMPT, answer="theft", answer_ids=[5, 6],
                                spans=[{"text": "Alice", "label": "forbidden"}])
        assert loop.time() - t0 < 0.05  # returns before the (slow) hand-off finishes
        assert hook.inflight == 1
        await _settle(hook)
        return hook

    hook = asyncio.run(main())
    assert hook.telemetry.sampling == {"labelled": 1}
    assert hook.telemetry.drops == {"handoff_error": 1}  # the slow hand-off timed out: counted


def test_hook_counts_failures_and_respects_rates():
    async def main():
        ok, down = _FakeAuditor(), _FakeAuditor("raise")
        hook = _hook(sample_rate=1.0)
        await hook.after_answer(ok, "a", prompt=PROMPT, answer="x")
        await hook.after_answer(down, "b", prompt=PROMPT, answer="x")
        await _settle(hook)
        never = _hook(sample_rate=0.0)
        await never.after_answer(ok, "c", prompt=PROMPT, answer="x")
        await never.after_answer(ok, "d", prompt=PROMPT, answer="x", force=True)
        await _settle(never)
        off = _hook(sample_rate=1.0, audit_enabled=False)
        await off.after_answer(ok, "e", prompt=PROMPT, answer="x")
        return hook, never, off, ok

    hook, never, off, ok = asyncio.run(main())
    assert [j.request_id for j in ok.jobs] == ["a", "d"]
    assert ok.jobs[1].sampling_reason == "forced" and ok.jobs[0].sampling_reason == "base_rate"
    assert hook.telemetry.drops == {"handoff_error": 1} and hook.telemetry.errors == {"handoff": 1}
    assert never.telemetry.sampling == {"not_sampled": 1, "forced": 1}
    assert not off.telemetry.sampling


# ------------------------------------------------------------------------------------------------
# Schemas and model loading errors
# ------------------------------------------------------------------------------------------------
def test_schema_errors_name_fields():
    with pytest.raises(ValidationError) as e:
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})
    assert error_field(e.value.errors()) == "messages.0.role"
    with pytest.raises(ValidationError) as e:
        CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"]})
    assert error_field(e.value.errors()) == "prompt"
    with pytest.raises(ValidationError) as e:
        AuditHints.model_validate({"spans": [{"text": "a", "label": "secret"}]})
    assert error_field(e.value.errors()) == "spans.0.label"
    ok = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}], "logit_bias": {}, "stop": "x"})
    assert ok.messages[0].text(0) == "hi there" and ok.stop == ["x"] and ok.max_tokens is None


def test_model_loading_errors_are_actionable(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_model(str(tmp_path / "empty"), device="cuda")
